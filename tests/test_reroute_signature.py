"""What lets the batch re-route skip work gives the same answers as the work it skips.

- ``gis.duty.DutyMemo`` answers exactly as ``on_duty`` (every minute of a week and the
  instants around shift boundaries, overnight shifts, ``24:00``, other time zones, rosters
  that share their content, malformed shifts);
- the stored ``routing_sig`` is what ``gis.routing.signature`` makes of the
  decision stored with the case, for cases with teams, two sides and parties;
- the batch reads a case's parties from the COPY and decides it as at report time: a dry run
  right after the reports changes nothing;
- after a boundary change the batch finds exactly what deciding every case in full finds.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from api.usecases.reroute import reroute
from gis.duty import DutyMemo, on_duty
from gis.errors import DomainError
from gis.routing import SIG_KEYS, Report, contacts_digest, decide, signature
from layers import bulk, locate
from tests.geo import ANJU, TONGNAN, hand_strip_to_anju, point_inside

CATS = ("theft", "land_dispute", "traffic_accident", "river_pollution", "forest_fire_hazard")
NEWFOUNDLAND = ZoneInfo("America/St_Johns")
ROSTERS: list[dict[str, Any]] = [
    {"timezone": "Asia/Shanghai", "shifts": [
        {"name": "day", "days": [1, 2, 3, 4, 5, 6, 7], "start": "08:00", "end": "20:00"},
        {"name": "night", "days": [1, 2, 3, 4, 5, 6, 7], "start": "20:00", "end": "08:00"}]},
    {"timezone": "Asia/Shanghai", "shifts": [
        {"name": "day", "days": [1, 2, 3, 4, 5], "start": "08:30", "end": "17:30"}]},
    {"timezone": "Asia/Shanghai", "shifts": [
        {"name": "late", "days": [5, 6], "start": "18:15", "end": "24:00"},
        {"name": "night", "days": [7], "start": "22:00", "end": "06:45"}]},
    {"timezone": "Asia/Kathmandu", "shifts": [  # +05:45
        {"name": "day", "days": [2, 4], "start": "09:10", "end": "16:50"}]},
    {"timezone": "Europe/Berlin", "shifts": [  # daylight saving time
        {"name": "all", "days": [7], "start": "00:00", "end": "00:00"}]},
    {"timezone": "No/Such_Zone", "shifts": [
        {"name": "bad", "days": ["x"], "start": "08:00", "end": "20:00"},
        {"name": "bad", "days": [3], "start": "25:00", "end": "20:00"},
        {"name": "ok", "days": [3], "start": "07:00", "end": "09:00"}]},
    {"shifts": []},
    {},
]  # fmt: skip


def test_duty_memo_answers_as_on_duty():
    memo = DutyMemo()
    twins = [dict(r) for r in ROSTERS]  # same content, other objects: share the memo
    start = datetime(2026, 3, 23, 0, 0, 7, tzinfo=UTC)  # a week across Berlin's switch to DST
    instants = [start + timedelta(minutes=m) for m in range(0, 8 * 24 * 60, 7)]
    for m in range(0, 8 * 24 * 60, 60):  # around every hour's boundaries, to the microsecond
        base = start.replace(second=0) + timedelta(minutes=m)
        instants += [base + timedelta(microseconds=d) for d in (-1, 0, 1)]
        instants += [base + timedelta(minutes=15, microseconds=d) for d in (-1, 0, 1)]
        instants += [base + timedelta(minutes=45, seconds=d) for d in (-1, 0, 59)]
    local_midnight = datetime(2026, 3, 27, 16, 0, tzinfo=UTC)  # 2026-03-28 00:00 in Shanghai
    instants += [local_midnight + timedelta(microseconds=d) for d in (-1_000_001, -1, 0, 1)]
    checked = 0
    for at in instants:
        for r, twin in zip(ROSTERS, twins, strict=True):
            want = on_duty(r, at)
            assert memo(r, at) == want, (r, at)
            assert memo(twin, at) == want, (r, at)
            assert memo(r, at.astimezone(NEWFOUNDLAND)) == want  # -03:30 or -02:30
            checked += 1
    assert checked > 10_000
    assert memo(None, start) is False


@pytest.mark.parametrize("mode", ["parties", "near_line"])
def test_stored_signature_and_a_dry_run(conn, client, catalogue, mode):
    made = []
    for k, f in enumerate((0.2, 0.35, 0.5, 0.65, 0.8)):
        try:
            if mode == "parties":
                x, y = point_inside(ANJU if k % 2 else TONGNAN, 3000.0 + 300 * k, f)
            else:
                x, y = point_inside(ANJU if k % 2 else TONGNAN, 150.0 + 200 * k, f)
        except AssertionError:
            continue
        body = {"lon": x, "lat": y, "category": "land_dispute", "severity": "orange"}
        if mode == "parties":
            body["parties_sides"] = [TONGNAN if k % 2 else ANJU]
        r = client.post("/api/v1/incidents", json=body)
        assert r.status_code == 201, r.text
        made.append(r.json())
    assert len(made) >= 3
    rows = conn.execute(
        "SELECT code, routing_sig, mechanism, sides, teams, contacts FROM incidents"
        " WHERE id = ANY(%s::uuid[])",
        ([c["id"] for c in made],),
    ).fetchall()
    assert len(rows) == len(made)
    for row in rows:
        assert len(row["sides"]) == 2  # cross-boundary: teams, contacts on both sides
        mech, sides, teams, digest = row["routing_sig"].split("\x1d")
        assert (mech, sides.split(",")) == (row["mechanism"], row["sides"])
        assert teams == ",".join(t["code"] for t in row["teams"])
        keys = [
            (c["side"], c["role"], c["unit_code"], c.get("name") or "") for c in row["contacts"]
        ]
        assert digest == contacts_digest(keys)  # as signature() makes it of a decision
    assert bulk.sibling(conn) is None  # inside the test's transaction: read on conn itself
    done = reroute(conn, catalogue, dry_run=True)
    assert done.failed == 0
    assert done.changed == 0, done.examples


def test_batch_equals_deciding_every_case_in_full(conn, client, catalogue):
    """After a boundary change, the batch (its facts without the far sides, decisions memoised
    on their inputs) finds exactly the changes that deciding every open case one by one, with
    the report path's facts, finds."""
    for k, f in enumerate(np.linspace(0.1, 0.9, 9)):
        for side, m in ((ANJU, 400.0), (ANJU, 2500.0), (TONGNAN, 900.0), (TONGNAN, 4000.0)):
            try:
                x, y = point_inside(side, m + 10 * k, float(f))
            except AssertionError:
                continue
            body = {"lon": x, "lat": y, "category": CATS[k % len(CATS)], "severity": "blue"}
            assert client.post("/api/v1/incidents", json=body).status_code == 201
    hand_strip_to_anju(conn, 1500)
    now = datetime(2026, 11, 27, 2, 30, tzinfo=UTC)
    batch = reroute(conn, catalogue, dry_run=True, now=now)

    mech = {c: catalogue.mechanism_for(c) for c in catalogue.categories}
    df = bulk.reroute_cases(conn, open_only=True, radius_m=catalogue.border_zone_m, mechanisms=mech)
    # the members' fixes as of the time each case was decided, as its report read them
    as_of = {
        r["id"]: r["as_of"]
        for r in conn.execute(
            "SELECT id::text, CASE WHEN (routing ->> 'rerouted')::boolean THEN reported_at"
            " ELSE coalesce((routing ->> 'decided_at')::timestamptz, reported_at) END AS as_of"
            " FROM incidents"
        ).fetchall()
    }
    changed, failed, by_change = 0, 0, Counter[str]()
    for i in range(len(df)):
        x, y = float(df["lon"][i]), float(df["lat"][i])
        rep = Report(
            x, y, df["category"][i], df["severity"][i],
            datetime.fromtimestamp(float(df["occurred"][i]), UTC),
        )  # fmt: skip
        try:
            one = locate.facts(
                conn, lon=x, lat=y, radius_m=catalogue.border_zone_m,
                mechanism=mech[df["category"][i]], teams_if_cross=True,
                as_of=as_of[str(df["id"][i])],
            )  # fmt: skip
            new = signature(decide(rep, one, catalogue, now=now))
        except DomainError:
            failed += 1
            continue
        old = tuple(df[f"old_{k}"][i] for k in SIG_KEYS)
        if new != old:
            changed += 1
            by_change.update(k for k, a, b in zip(SIG_KEYS, old, new, strict=True) if a != b)
    assert len(df) == batch.examined >= 20
    assert changed >= 5  # the strip moved some cases' sides
    assert (batch.changed, batch.failed, dict(batch.by_change)) == (
        changed, failed, dict(by_change),
    )  # fmt: skip
