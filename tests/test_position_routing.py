"""Routing by where a team is now: the facts engine places each candidate team by its nearest
member's fresh fix, as of the decision's time.

Fixes are posted over real HTTP to a real server (``live_server``) in the query form Traccar
Client sends; reports and ``/locate`` go over HTTP too. Every device a test makes is revoked
when it ends, so that its fixes place no team in a later test (a fix counts as of a time only
if its device was not revoked by then), while a re-route still reads them as of the past.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from psycopg.rows import dict_row
from pyproj import Geod

from api import settings
from api.i18n import trace as trace_text
from api.usecases import reroute
from gis.facts import LocationFacts, TeamCandidate
from layers import bulk, devices, locate
from tests.conftest import bearer
from tests.geo import ANJU, point_inside
from tests.test_positions import traccar_android_url

GEOD = Geod(ellps="WGS84")
CATEGORY = "theft"  # joint_defense: T06 covers the point, T04 and T10 are farther
P = point_inside(ANJU, 300, 0.5)  # a point of Anju 300 m from the line


def _offset(lon: float, lat: float, metres: float, azimuth: float = 0.0) -> tuple[float, float]:
    x, y, _ = GEOD.fwd(lon, lat, azimuth, metres)
    return x, y


def _geod_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(GEOD.inv(a[0], a[1], b[0], b[1])[2])


@pytest.fixture()
def db(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as c:  # type: ignore[arg-type]
        yield c


@pytest.fixture()
def http(live_server: str, api_keys: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, headers=bearer(api_keys["admin"]), timeout=30) as c:
        yield c


@pytest.fixture()
def make_device(db: psycopg.Connection[Any]) -> Iterator[Any]:
    """``make_device(team)``: a committed device of a new member of ``team``, revoked at the end."""
    made: list[str] = []

    def make(team: str) -> dict[str, Any]:
        key, rec = devices.add_device(db, team=team, member_name=f"定位测试 {uuid.uuid4().hex[:6]}")
        made.append(rec["id"])
        return {**rec, "key": key}

    yield make
    for dev in made:
        db.execute("UPDATE devices SET revoked_at = now() WHERE id = %s", (dev,))


def _post_fix(
    http: httpx.Client, dev: dict[str, Any], at: datetime, where: tuple[float, float], **kw: Any
) -> None:
    """As Traccar Client for Android posts it: the key in the server URL, the fields after it."""
    r = http.post(
        traccar_android_url(dev, t=at, lon=where[0], lat=where[1], **kw),
        content=b"",
        headers={"Authorization": ""},
    )
    assert r.status_code == 200, r.text


def _facts(conn: Any, catalogue: Any, as_of: datetime | None) -> LocationFacts:
    """The facts of P as the report path reads them."""
    return locate.facts(
        conn,
        lon=P[0],
        lat=P[1],
        radius_m=catalogue.border_zone_m,
        mechanism=catalogue.mechanism_for(CATEGORY),
        teams_if_cross=True,
        as_of=as_of,
        fix_max_age_s=settings.patrol().fresh_fix_s,
    )


def _team(f: LocationFacts, code: str) -> TeamCandidate:
    return next(t for t in f.teams if t.code == code)


def _whole_seconds_ago(seconds: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds)


def _report(http: httpx.Client) -> dict[str, Any]:
    r = http.post(
        "/api/v1/incidents",
        json={"lon": P[0], "lat": P[1], "category": CATEGORY, "description": "routing by fix"},
    )
    assert r.status_code == 201, r.text
    return r.json()


def _stored(conn: Any, case_id: str) -> dict[str, Any]:
    return conn.execute(
        "SELECT id::text, code, routing, teams, routing_sig, reported_at FROM incidents"
        " WHERE id = %s",
        (case_id,),
    ).fetchone()


def _reroute_facts(conn: Any, catalogue: Any, case_id: str) -> LocationFacts:
    """The facts the batch re-route reads for the case (as of its decision)."""
    mech = {c: catalogue.mechanism_for(c) for c in catalogue.categories}
    df = bulk.reroute_cases(
        conn,
        open_only=True,
        radius_m=catalogue.border_zone_m,
        mechanisms=mech,
        ids=[case_id],
        far=True,
        fix_max_age_s=settings.patrol().fresh_fix_s,
    )
    assert len(df) == 1
    return locate.to_facts(P[0], P[1], orjson.loads(bytes.fromhex(df["facts"][0])))


def _same_fix(a: Any, b: Any) -> bool:
    return (a.member, a.device, a.at, a.lon, a.lat) == (b.member, b.device, b.at, b.lon, b.lat)


def test_a_fix_150_m_from_the_point_places_its_team(db, http, make_device, catalogue):
    dev = make_device("T10")  # its base is 13 km from the point
    at = _whole_seconds_ago(90)
    where = _offset(*P, 150.0)
    _post_fix(http, dev, at, where, accuracy=8.0)
    before = datetime.now(UTC)
    case = _report(http)
    f = _facts(db, catalogue, datetime.now(UTC))
    t10 = _team(f, "T10")
    assert t10.fix is not None
    assert (t10.fix.device, t10.fix.member) == (dev["id"], dev["member_id"])
    assert datetime.fromisoformat(t10.fix.at) == at
    assert (t10.fix.lon, t10.fix.lat) == pytest.approx(where, abs=1e-9)
    assert t10.fix.distance_m == pytest.approx(_geod_m(P, where), abs=0.05)  # the ellipsoid
    assert t10.fix.distance_m == pytest.approx(150.0, abs=0.05)
    assert t10.base_distance_m > 10_000
    # the other teams have no fix; without a time to read positions as of, none has
    assert all(t.fix is None for t in f.teams if t.code != "T10")
    assert all(t.fix is None for t in _facts(db, catalogue, None).teams)

    # The stored case: its decision's time, and the facts a re-route reads as of it
    row = _stored(db, case["id"])
    decided = datetime.fromisoformat(row["routing"]["decided_at"])
    assert before <= decided <= datetime.now(UTC)
    again = _team(_reroute_facts(db, catalogue, case["id"]), "T10")
    assert again.fix is not None and _same_fix(again.fix, t10.fix)
    assert again.fix.age_s == pytest.approx((decided - at).total_seconds(), abs=1e-3)
    assert again.fix.distance_m == pytest.approx(t10.fix.distance_m, abs=1e-6)

    # The teams step, in Chinese, of a candidate placed by its member's fix
    data = {
        "at": row["routing"]["decided_at"],
        "candidates": [
            {
                "code": "T10",
                "covers": False,
                "on_duty": True,
                "base_distance_m": round(again.base_distance_m, 1),
                "distance_m": round(again.fix.distance_m, 1),
                "placed_by": "fix",
                "fix_age_s": round(again.fix.age_s, 1),
            }
        ],
    }
    minutes = f"{again.fix.age_s / 60:.0f}"
    text = trace_text.render([{"step": "teams", "says": "", "data": data}], {"teams": []})[0]
    assert text["text"] == (
        f"无在岗队伍覆盖该点；最近的在岗队伍：T10，距事发点 150 米（{minutes} 分钟前的定位）；牵头队伍 T10"
    )
    by_base = {**data["candidates"][0], "placed_by": "base", "distance_m": data["candidates"][0]["base_distance_m"]}  # fmt: skip
    text = trace_text.render(
        [{"step": "teams", "says": "", "data": {**data, "candidates": [by_base]}}], {"teams": []}
    )[0]
    assert "距驻地" in text["text"] and "定位" not in text["text"]


def test_the_stored_decision_names_the_team_placed_by_its_members_fix(db, http, make_device):
    dev = make_device("T06")  # T06 covers the point: the lead, now placed by its member's fix
    _post_fix(http, dev, _whole_seconds_ago(120), _offset(*P, 120.0), accuracy=8.0)
    row = _stored(db, _report(http)["id"])
    lead = row["teams"][0]
    assert lead["code"] == "T06" and lead["lead"], row["teams"]
    assert lead["fix"]["device"] == dev["id"] and lead["fix"]["member"] == dev["member_id"]
    assert lead["fix"]["distance_m"] == pytest.approx(120.0, abs=0.1)
    assert lead["fix"]["age_s"] == pytest.approx(120.0, abs=30)
    step = next(s for s in row["routing"]["trace"] if s["step"] == "teams")
    assert "T06, 120 m from the point (fix 2 min old)" in step["says"], step["says"]
    cand = next(c for c in step["data"]["candidates"] if c["code"] == "T06")
    assert cand["placed_by"] == "fix" and cand["distance_m"] == pytest.approx(120.0, abs=0.1)
    shown = trace_text.render(row["routing"]["trace"], row)
    teams = next(x for x in shown if x["step"] == "teams")
    assert "T06，距事发点 120 米（2 分钟前的定位）" in teams["text"], teams["text"]


def test_a_team_whose_base_is_far_is_a_candidate_by_its_members_fix(
    db, conn, http, make_device, catalogue
):
    dev = make_device("T10")
    _post_fix(http, dev, _whole_seconds_ago(60), _offset(*P, 150.0, 90.0))
    # ten other teams of the mechanism with bases nearer: T10 is no longer among the ten
    # nearest bases (in the test's rolled-back transaction)
    for i in range(10):
        base = _offset(*P, 3000.0 + 10 * i, 36.0 * i)
        conn.execute(
            "INSERT INTO teams (code, name, kind, side, sides, mechanisms, roster, patrol_area,"
            " base) SELECT %s, name, kind, side, sides, mechanisms, roster,"
            " ST_Multi(ST_Buffer(ST_SetSRID(ST_MakePoint(%s, %s), 4326), 0.001)),"
            " ST_SetSRID(ST_MakePoint(%s, %s), 4326) FROM teams WHERE code = 'T04'",
            (f"X{i:02d}", base[0], base[1], base[0], base[1]),
        )
    now = datetime.now(UTC)
    assert "T10" not in [t.code for t in _facts(conn, catalogue, None).teams]
    f = _facts(conn, catalogue, now)
    t10 = _team(f, "T10")
    assert t10.fix is not None and t10.fix.device == dev["id"]
    assert t10.fix.distance_m == pytest.approx(150.0, abs=0.05)
    assert len(f.teams) == len(_facts(conn, catalogue, None).teams) + 1


def test_a_stale_or_flagged_fix_is_ignored(db, http, make_device, catalogue):
    fresh = settings.patrol().fresh_fix_s
    stale = make_device("T10")
    _post_fix(http, stale, _whole_seconds_ago(fresh + 60), _offset(*P, 150.0))
    only_flagged = make_device("T04")
    _post_fix(http, only_flagged, _whole_seconds_ago(30), _offset(*P, 100.0), accuracy=500.0)
    good_then_flagged = make_device("T06")
    far = _offset(*P, 1200.0, 180.0)
    _post_fix(http, good_then_flagged, _whole_seconds_ago(120), far, accuracy=5.0)
    _post_fix(http, good_then_flagged, _whole_seconds_ago(20), _offset(*P, 50.0), accuracy=500.0)
    f = _facts(db, catalogue, datetime.now(UTC))
    assert _team(f, "T10").fix is None  # older than the setting
    assert _team(f, "T04").fix is None  # poor accuracy: stored, flagged
    t06 = _team(f, "T06").fix
    assert t06 is not None and t06.device == good_then_flagged["id"]
    assert t06.distance_m == pytest.approx(
        _geod_m(P, far), abs=0.05
    )  # the good fix, not the flagged one
    flagged = db.execute(
        "SELECT flags FROM positions WHERE device = %s", (only_flagged["id"],)
    ).fetchone()
    assert flagged["flags"] == ["accuracy"]


def test_a_reroute_keeps_a_case_decided_by_fix_after_the_member_walked_away(
    db, conn, http, make_device, catalogue
):
    dev = make_device("T10")
    then = _whole_seconds_ago(200)
    near = _offset(*P, 150.0)
    _post_fix(http, dev, then, near)
    case = _report(http)
    row = _stored(db, case["id"])
    time.sleep(1.1)
    away = _offset(*P, 2500.0, 270.0)  # 2.5 km in 200 s: a good fix
    walked = datetime.now(UTC).replace(microsecond=0)
    _post_fix(http, dev, walked, away)
    now_fix = _team(_facts(db, catalogue, datetime.now(UTC)), "T10").fix
    assert now_fix is not None and datetime.fromisoformat(now_fix.at) == walked
    # the re-route reads the fix as of the decision, not the one since
    was = _team(_reroute_facts(db, catalogue, case["id"]), "T10").fix
    assert was is not None and datetime.fromisoformat(was.at) == then
    assert was.distance_m == pytest.approx(150.0, abs=0.05)
    # (the real run in the test's rolled-back transaction: other tests' cases and the record
    # of re-route runs are left as they were)
    for dry in (True, False):
        summary = reroute.reroute(conn, catalogue, dry_run=dry, full=True)
        assert case["code"] not in summary.changed_codes, summary.as_dict()
        assert summary.examined >= 1
    after = _stored(conn, case["id"])
    assert (after["routing_sig"], after["teams"], after["routing"]) == (
        row["routing_sig"],
        row["teams"],
        row["routing"],
    )


def test_locate_and_the_report_read_the_same_fix(db, http, make_device, catalogue):
    dev = make_device("T06")  # its patrol area covers the point: /locate lists it
    at = _whole_seconds_ago(45)
    _post_fix(http, dev, at, _offset(*P, 150.0, 45.0))
    r = http.get("/api/v1/locate", params={"lon": P[0], "lat": P[1]})
    assert r.status_code == 200, r.text
    shown = next(t for t in r.json()["teams"] if t["code"] == "T06")
    case = _report(http)
    stored = _team(_reroute_facts(db, catalogue, case["id"]), "T06").fix
    assert stored is not None and shown["fix"] is not None
    assert {k: shown["fix"][k] for k in ("member", "device", "at", "lon", "lat")} == {
        "member": stored.member,
        "device": stored.device,
        "at": stored.at,
        "lon": stored.lon,
        "lat": stored.lat,
    }
    assert shown["fix"]["distance_m"] == round(stored.distance_m, 1)
    assert datetime.fromisoformat(stored.at) == at
    # one point alone and the batch read agree, fixes included
    now = datetime.now(UTC)
    many = locate.facts_of_points(
        db, [P[0]], [P[1]], radius_m=catalogue.border_zone_m,
        mechanism=[catalogue.mechanism_for(CATEGORY)], as_of=now,
        fix_max_age_s=settings.patrol().fresh_fix_s,
    )  # fmt: skip
    batch = locate.to_facts(P[0], P[1], many.docs[many.keys[0]])
    assert batch.teams == _facts(db, catalogue, now).teams


def test_documents_without_fixes_are_those_of_bases_alone_to_the_byte(conn, catalogue):
    """With no fresh fix near, the document read as of now is the one read by bases alone (the
    engine's document from before positions): the same text, so the same md5 in the re-route."""
    conn.execute("UPDATE devices SET revoked_at = now() WHERE revoked_at IS NULL")
    line = conn.execute(
        "SELECT ST_X(p) AS x, ST_Y(p) AS y FROM (SELECT ST_LineInterpolatePoint(l.g, f) AS p"
        " FROM (SELECT d.geom AS g FROM border b, ST_Dump(ST_LineMerge(b.geom)) d"
        " WHERE b.kind = 'line' ORDER BY ST_Length(d.geom) DESC LIMIT 1) l,"
        " generate_series(0.0, 1.0, 0.005) f) s"
    ).fetchall()
    xs, ys = [r["x"] for r in line], [r["y"] for r in line]
    mech = (["joint_defense", None, "joint_governance"] * len(xs))[: len(xs)]
    q = (
        "SELECT facts::text AS t FROM jointgrid_facts(%s::float8[], %s::float8[], %s, %s::text[],"
        " p_teams_if_cross => true, p_as_of => %s::timestamptz[]) ORDER BY ord"
    )
    now = [datetime.now(UTC)] * len(xs)
    zone = catalogue.border_zone_m
    by_base = [r["t"] for r in conn.execute(q, (xs, ys, zone, mech, None))]
    as_of = [r["t"] for r in conn.execute(q, (xs, ys, zone, mech, now))]
    assert as_of == by_base
    assert sum('"teams" : [{' in t for t in by_base) > 100  # points whose teams are read
    assert all('"fix"' not in t for t in as_of)
    # the teams aggregated as records, as before positions (json_agg's separator for records;
    # an aggregate of json values, the engine's form with fixes, has none)
    assert any('}, \n {"code"' in t for t in as_of)
