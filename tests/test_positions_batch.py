"""The batch reader of ``POST /api/v1/positions`` (``gis.fixes.read_batch``, ``flag_batch``),
which reads a batch as columns, gives the same fixes, refusals and flags as each fix read by
``batch_item`` and judged on its own by the rules written out here, one fix at a time and in
plain Python (the module's own ``refusal`` and ``flag`` are its batch code for a batch of one,
so they are no reference), on hand-made and generated batches."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gis import fixes as fx
from gis.crs import from_wgs84
from gis.errors import InvalidInput

NOW = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
RULES = fx.Rules(
    retention=timedelta(days=90),
    future=timedelta(minutes=5),
    max_speed_mps=55.0,
    max_accuracy_m=100.0,
    bounds=(105.0, 29.5, 106.5, 30.8),
)


def refusal_ref(f: fx.Fix) -> str | None:
    if f.time > NOW + RULES.future:
        return "future"
    if f.time < NOW - RULES.retention:
        return "too_old"
    assert RULES.bounds is not None
    minx, miny, maxx, maxy = RULES.bounds
    if not (minx <= f.lon <= maxx and miny <= f.lat <= maxy):
        return "outside_service_area"
    return None


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(a)))


def flag_ref(fixes: list[fx.Fix], previous: fx.Fix | None) -> list[fx.Fix]:
    out, base = [], previous
    for f in sorted(fixes, key=lambda f: f.time):
        flags = []
        if f.accuracy_m is not None and f.accuracy_m > RULES.max_accuracy_m:
            flags.append("accuracy")
        if base is not None and f.time > base.time:
            dt = (f.time - base.time).total_seconds()
            if haversine_m(base.lon, base.lat, f.lon, f.lat) / dt > RULES.max_speed_mps:
                flags.append("speed")
        g = replace(f, flags=tuple(flags))
        if not flags:
            base = g
        out.append(g)
    return out


def one_by_one(items: list[Any], *, crs: str, previous: fx.Fix | None) -> tuple[Any, Any]:
    """The reference: each fix read and judged on its own, as the batch use-case did."""
    read: list[tuple[int, fx.Fix]] = []
    refused: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        try:
            f = fx.batch_item(item, crs=crs, now=NOW)
        except InvalidInput as exc:
            refused.append({"index": i, "code": exc.code, "message": exc.message})
            continue
        reason = refusal_ref(f)
        if reason is not None:
            refused.append({"index": i, "code": reason, "message": fx.REASONS[reason]})
        else:
            read.append((i, f))
    seen: dict[datetime, int] = {}
    for i, f in read:
        if f.time in seen:
            refused.append(
                {
                    "index": i,
                    "code": "duplicate_time",
                    "message": f"the same time as fix {seen[f.time]}: one fix per time",
                }
            )
        seen.setdefault(f.time, i)
    refused.sort(key=lambda r: r["index"])
    if refused:
        return None, refused
    index = {f.time: i for i, f in read}
    flagged = flag_ref([f for _, f in read], previous)
    return [(index[f.time], f) for f in flagged], []


def as_columns(items: list[Any], *, crs: str, previous: fx.Fix | None) -> tuple[Any, Any]:
    batch, refused = fx.read_batch(items, crs=crs, now=NOW, rules=RULES)
    if refused:
        return None, refused
    b = fx.flag_batch(batch, previous=previous, rules=RULES)
    out = []
    for k in range(len(b)):
        acc, spd = float(b.accuracy_m[k]), float(b.speed_mps[k])
        out.append(
            (
                int(b.index[k]),
                fx.Fix(
                    lon=float(b.lon[k]),
                    lat=float(b.lat[k]),
                    time=b.time[k],
                    accuracy_m=None if math.isnan(acc) else acc,
                    speed_mps=None if math.isnan(spd) else spd,
                    flags=b.flags(k),
                ),
            )
        )
    return out, []


def same(items: list[Any], *, crs: str = "wgs84", previous: fx.Fix | None = None) -> None:
    want, want_refused = one_by_one(items, crs=crs, previous=previous)
    got, got_refused = as_columns(items, crs=crs, previous=previous)
    assert got_refused == want_refused
    if want is None:
        return
    assert [i for i, _ in got] == [i for i, _ in want]
    for (_, g), (_, w) in zip(got, want, strict=True):
        assert g.time == w.time
        assert g.lon == pytest.approx(w.lon, abs=1e-9) and g.lat == pytest.approx(w.lat, abs=1e-9)
        assert (g.accuracy_m, g.speed_mps, g.flags) == (w.accuracy_m, w.speed_mps, w.flags)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_a_batch_with_every_kind_of_fault_is_refused_alike() -> None:
    t = NOW - timedelta(hours=1)
    gx, gy = from_wgs84(105.6, 30.2, "gcj02")
    items: list[Any] = [
        {"lon": 105.6, "lat": 30.2, "time": iso(t)},
        {"lon": "105.6", "lat": "30.2", "time": iso(t + timedelta(seconds=30))},  # strings
        {"lon": gx, "lat": gy, "time": iso(t + timedelta(seconds=60)), "crs": "gcj02"},
        {"lon": 105.6, "lat": 30.2, "time": (t + timedelta(seconds=90)).isoformat()[:19]},
        {"lon": 105.6, "lat": 30.2},  # no time
        {"lon": 30.2, "lat": 105.6, "time": iso(t)},  # swapped
        {"lon": 105.6, "lat": 30.2, "time": iso(t), "crs": "mars"},
        {"lon": 105.6, "lat": 30.2, "time": iso(t), "colour": "red"},
        "not a fix",
        {"lon": 105.6, "lat": 30.2, "time": iso(NOW + timedelta(hours=1))},
        {"lon": 105.6, "lat": 30.2, "time": iso(NOW - timedelta(days=100))},
        {"lon": 110.0, "lat": 30.2, "time": iso(t + timedelta(seconds=120))},
        {"lon": 105.6, "lat": 30.2, "time": iso(t)},  # the same time as fix 0
        {"lon": True, "lat": 30.2, "time": iso(t + timedelta(seconds=150))},
        {"lon": 105.6, "lat": 30.2, "time": int((t + timedelta(seconds=180)).timestamp())},
        {"lon": 105.6, "lat": 30.2, "time": "yesterday"},
        {"lon": None, "lat": 30.2, "time": iso(t + timedelta(seconds=210))},
    ]
    same(items)
    got, refused = as_columns(items, crs="wgs84", previous=None)
    assert got is None
    assert [r["index"] for r in refused] == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16]


def test_good_batches_read_and_flag_alike() -> None:
    t = NOW - timedelta(hours=2)
    bx, by = from_wgs84(105.61, 30.21, "bd09")
    items: list[Any] = [
        {"lon": 105.6, "lat": 30.2, "time": iso(t + timedelta(seconds=60)), "accuracy": 0},
        {"lon": 105.6001, "lat": 30.2, "time": iso(t), "accuracy": 6, "speed": -1},  # earlier
        {"lon": 105.7, "lat": 30.2, "time": iso(t + timedelta(seconds=90))},  # too fast
        {"lon": 105.6002, "lat": 30.2, "time": iso(t + timedelta(seconds=120)), "accuracy": 500},
        {"lon": bx, "lat": by, "time": (t + timedelta(seconds=900)).isoformat(), "crs": "bd09"},
        {"lon": "105.61", "lat": 30.21, "time": str(int((t + timedelta(seconds=960)).timestamp()))},
        {"lon": 105.61, "lat": 30.21, "time": "2026-12-02T11:30:00+08:00", "speed": 1.5},
    ]
    same(items)
    same(items, previous=fx.Fix(lon=106.4, lat=30.7, time=t - timedelta(seconds=30)))
    same(items, crs="gcj02")
    got, _ = as_columns(items, crs="wgs84", previous=None)
    assert got is not None
    assert [i for i, _ in got] == [1, 0, 2, 3, 4, 5, 6]
    assert [f.flags for _, f in got][:4] == [(), (), ("speed",), ("accuracy",)]


def test_a_fix_flagged_for_its_accuracy_is_no_base_for_the_next() -> None:
    t = NOW - timedelta(hours=1)
    items = [
        {"lon": 105.6, "lat": 30.2, "time": iso(t)},
        # 960 m in 30 s: not too fast, but too inaccurate
        {"lon": 105.61, "lat": 30.2, "time": iso(t + timedelta(seconds=30)), "accuracy": 500},
        # 48 m/s from the first fix (fine); 96 m/s from the inaccurate one
        {"lon": 105.62, "lat": 30.2, "time": iso(t + timedelta(seconds=40))},
    ]
    same(items)
    got, _ = as_columns(items, crs="wgs84", previous=None)
    assert got is not None
    assert [f.flags for _, f in got] == [(), ("accuracy",), ()]


fix_items = st.fixed_dictionaries(
    {
        "lon": st.floats(104.9, 106.6),
        "lat": st.floats(29.4, 30.9),
        "time": st.integers(-90 * 86400 - 600, 900).map(lambda s: iso(NOW + timedelta(seconds=s))),
    },
    optional={
        "accuracy": st.one_of(st.none(), st.floats(-5, 300)),
        "speed": st.one_of(st.none(), st.floats(-2, 80)),
        "crs": st.sampled_from(["wgs84", "gcj02", "bd09", "GCJ-02", ""]),
    },
)


@settings(max_examples=150, deadline=None)
@given(st.lists(fix_items, min_size=1, max_size=40), st.sampled_from(["wgs84", "gcj02"]))
def test_generated_batches_agree(items: list[Any], crs: str) -> None:
    same(items, crs=crs)


# -- over HTTP, on a real server ------------------------------------------------------------


def test_an_acknowledged_batch_is_committed_before_the_answer(db_url, live_server) -> None:
    """The moment each 200 arrives, another connection sees the batch's fixes, the device's
    latest fix and the fixes queued for its sessions (on the backlog, or already placed by the
    server's patrol worker): the batch is one transaction, committed before the answer is sent
    (so an answered batch survives a crash of the server that answered). The worker then
    places every fix in the device's session, and empties its backlog."""
    import httpx
    import psycopg
    from psycopg.rows import dict_row

    from layers import devices
    from tests.conftest import bearer
    from tests.geo import ANJU, point_inside

    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as reader:
        team = reader.execute(
            "SELECT code FROM teams WHERE side = %s ORDER BY code LIMIT 1", (ANJU,)
        ).fetchone()["code"]
        key, dev = devices.add_device(reader, team=team, member_name="批量提交测试")
        lon, lat = point_inside(ANJU, 400)
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)
        with httpx.Client(base_url=live_server, timeout=30) as http:
            for j in range(4):
                times = [t0 + timedelta(seconds=30 * (100 * j + k)) for k in range(100)]
                body = {
                    "device": dev["id"],
                    "fixes": [
                        {"lon": lon + 1e-5 * (100 * j + k), "lat": lat, "time": iso(t)}
                        for k, t in enumerate(times)
                    ],
                }
                r = http.post("/api/v1/positions", json=body, headers=bearer(key))
                assert r.status_code == 200, r.text
                assert r.json()["stored"] == 100
                row = reader.execute(
                    "SELECT (SELECT count(*) FROM positions WHERE device = %(d)s) AS n,"
                    " (SELECT time FROM device_latest WHERE device = %(d)s) AS latest,"
                    " (SELECT max(from_time) FROM patrol_backlog WHERE device = %(d)s) AS queued,"
                    " (SELECT max(ended_at) FROM patrol_sessions WHERE device = %(d)s) AS placed",
                    {"d": dev["id"]},
                ).fetchone()
                assert (row["n"], row["latest"]) == (100 * (j + 1), times[-1])
                # this batch is on the backlog, or the worker placed it already
                assert row["queued"] == times[0] or row["placed"] == times[-1], row
            # the worker places them all (a pass every JOINTGRID_PATROL_APPLY_INTERVAL_S, 2 s)
            deadline = time.monotonic() + 30
            while True:
                row = reader.execute(
                    "SELECT (SELECT count(*) FROM patrol_backlog WHERE device = %(d)s) AS queued,"
                    " (SELECT sum(fixes) FROM patrol_sessions WHERE device = %(d)s) AS placed",
                    {"d": dev["id"]},
                ).fetchone()
                if row == {"queued": 0, "placed": 400} or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert row == {"queued": 0, "placed": 400}
            # the same batch again: idempotent per device and time
            r = http.post("/api/v1/positions", json=body, headers=bearer(key))
            assert r.json()["stored"] == 0 and r.json()["duplicates"] == 100
