"""Positions in: members and devices, Traccar's OsmAnd protocol, OwnTracks, offline batches,
the time-partitioned store and its retention."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from layers import devices, positions
from tests.conftest import bearer
from tests.geo import ANJU, TONGNAN, point_inside

KNOT = 1852 / 3600


def _team(conn: Any, side: str = ANJU) -> dict[str, Any]:
    return conn.execute(
        "SELECT code, side, members FROM teams WHERE side = %s ORDER BY code LIMIT 1", (side,)
    ).fetchone()


@pytest.fixture()
def device(conn: Any) -> dict[str, Any]:
    """A device bound to a new member of an Anju team (rolled back with the test)."""
    team = _team(conn)
    key, rec = devices.add_device(
        conn, team=team["code"], member_name=f"测试队员 {uuid.uuid4().hex[:6]}"
    )
    return {**rec, "key": key}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _stored(conn: Any, device_id: str) -> list[dict[str, Any]]:
    return positions.track(conn, device=device_id)


# -- members and devices -------------------------------------------------------------------


def test_the_roster_members_are_records(conn):
    team = _team(conn)
    rows = devices.members(conn, team=team["code"])
    names = {m["name"] for m in team["members"]}
    assert names and names <= {r["name"] for r in rows}
    for r in rows:
        if r["name"] in names:
            m = next(m for m in team["members"] if m["name"] == r["name"])
            assert (r["phone"], r["role"], r["side"], r["team"]) == (
                m["phone"],
                m["role"],
                m["side"],
                team["code"],
            )
    # a change of roster follows at once
    conn.execute(
        "UPDATE teams SET members = members || %s::jsonb WHERE code = %s",
        (
            '[{"name": "新队员", "phone": "000-1", "role": "member", "side": "510904"}]',
            team["code"],
        ),
    )
    assert devices.member(conn, team=team["code"], name="新队员")["phone"] == "000-1"


def test_device_add_prints_id_then_key_and_the_key_only_posts_positions(db_url, live_client):
    env = {**os.environ, "DATABASE_URL": db_url}
    with positions_conn(db_url) as c:
        team = _team(c)["code"]
    member = f"CLI member {uuid.uuid4().hex[:6]}"
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "device", "add", "--team", team, "--member", member],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2, out.stdout
    dev_id, key = lines
    with positions_conn(db_url) as c:
        rec = c.execute(
            "SELECT d.team, m.name FROM devices d JOIN members m ON m.id = d.member_id WHERE d.id = %s",
            (dev_id,),
        ).fetchone()
    assert rec == {"team": team, "name": member}
    lon, lat = point_inside(ANJU, 500)
    ok = live_client.get(
        "/osmand",
        params={"id": dev_id, "key": key, "lat": lat, "lon": lon},
        headers={"Authorization": ""},
    )
    assert ok.status_code == 200, ok.text
    # the device key is no API key: no other route takes it
    for method, path in (
        ("GET", "/api/v1/incidents"),
        ("GET", "/ogc/collections"),
        ("GET", "/api/v1/locate?lon=1&lat=1"),
    ):
        r = live_client.request(method, path, headers=bearer(key))
        assert r.status_code == 401, (path, r.status_code)
    # revoked: 401 at once
    subprocess.run(
        [sys.executable, "-m", "api.cli", "device", "revoke", dev_id],
        env=env,
        check=True,
        timeout=60,
    )
    gone = live_client.get("/osmand", params={"id": dev_id, "key": key, "lat": lat, "lon": lon})
    assert gone.status_code == 401


def positions_conn(url: str) -> Any:
    import psycopg
    from psycopg.rows import dict_row

    return psycopg.connect(url, row_factory=dict_row, autocommit=True)


# -- OsmAnd --------------------------------------------------------------------------------


def traccar_android_url(
    dev: dict[str, Any], *, t: datetime, lon: float, lat: float, **kw: Any
) -> str:
    """The request Traccar Client for Android makes (ProtocolFormatter): the server URL's own
    query (our key) first, then its fields in its order, every value as Kotlin prints it."""
    fields = {
        "id": dev["id"],
        "timestamp": str(int(t.timestamp())),
        "lat": repr(lat),
        "lon": repr(lon),
        "speed": repr(float(kw.get("speed", 0.0))),
        "bearing": repr(float(kw.get("bearing", 0.0))),
        "altitude": repr(float(kw.get("altitude", 0.0))),
        "accuracy": repr(float(kw.get("accuracy", 0.0))),
        "batt": repr(float(kw.get("batt", 87.0))),
    }
    return "/osmand?" + urlencode({"key": dev["key"]}) + "&" + urlencode(fields)


def test_osmand_as_traccar_client_android_sends_it(client, conn, device):
    t = _now() - timedelta(seconds=30)
    lon, lat = point_inside(ANJU, 400)
    # the Android client POSTs with the fields in the URL and an empty body
    r = client.post(
        traccar_android_url(device, t=t, lon=lon, lat=lat, speed=2.7, accuracy=0.0, batt=64.0),
        content=b"",
        headers={"Authorization": ""},
    )
    assert r.status_code == 200, r.text
    (row,) = _stored(conn, device["id"])
    assert row["time"] == t and row["source"] == "osmand"
    assert abs(row["lon"] - lon) < 1e-9 and abs(row["lat"] - lat) < 1e-9
    assert row["speed_mps"] == pytest.approx(2.7 * KNOT, rel=1e-5)  # knots
    assert row["accuracy_m"] is None  # accuracy=0: unknown
    # and GET works too, with a real accuracy
    r = client.get(
        traccar_android_url(device, t=t + timedelta(seconds=30), lon=lon, lat=lat, accuracy=8.0)
    )
    assert r.status_code == 200
    assert [x["accuracy_m"] for x in _stored(conn, device["id"])] == [None, 8.0]


def traccar_json(
    dev_id: str, *, t: datetime, lon: float, lat: float, speed: float = 1.2, accuracy: float = 5.0
) -> dict[str, Any]:
    """The body of Traccar Client 9+ (its location template, flutter_background_geolocation)."""
    return {
        "location": {
            "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "coords": {
                "latitude": lat,
                "longitude": lon,
                "accuracy": accuracy,
                "speed": speed,
                "heading": 90.5,
                "altitude": 280.1,
            },
            "is_moving": True,
            "odometer": 1234.5,
            "event": "motionchange",
            "battery": {"level": 0.81, "is_charging": False},
            "activity": {"type": "walking"},
            "extras": {},
            "_": f"&id={dev_id}&lat={lat}&lon={lon}&timestamp={t.strftime('%Y-%m-%dT%H:%M:%S.000Z')}&",
        },
        "device_id": dev_id,
    }


def test_osmand_json_body_of_traccar_client_9(client, conn, device):
    t = _now() - timedelta(seconds=10)
    lon, lat = point_inside(TONGNAN, 900)
    r = client.post(
        "/osmand?" + urlencode({"key": device["key"]}),
        json=traccar_json(device["id"], t=t, lon=lon, lat=lat, speed=1.2),
        headers={"Authorization": ""},
    )
    assert r.status_code == 200, r.text
    (row,) = _stored(conn, device["id"])
    assert row["time"] == t
    assert row["speed_mps"] == pytest.approx(1.2, rel=1e-5)  # m/s in the JSON form
    assert row["accuracy_m"] == 5.0


def test_osmand_refuses_unknown_devices_and_wrong_keys_but_never_a_known_devices_fix(
    client, conn, device
):
    lon, lat = point_inside(ANJU, 400)
    t = _now()
    for params in (
        {"id": "no-such-device", "key": device["key"], "lat": lat, "lon": lon},
        {"id": device["id"], "key": "jgd_wrong", "lat": lat, "lon": lon},
        {"id": device["id"], "lat": lat, "lon": lon},
    ):
        r = client.get("/osmand", params=params, headers={"Authorization": ""})
        assert r.status_code == 401, params
        assert r.json()["code"] == "unauthenticated"
    # a known device: 200 for a fix from the future, one outside the area, one with no location
    for params in (
        {"timestamp": int((t + timedelta(hours=2)).timestamp()), "lat": lat, "lon": lon},
        {"timestamp": int(t.timestamp()), "lat": 39.9, "lon": 116.4},  # Beijing
        {"timestamp": int(t.timestamp())},
    ):
        r = client.get("/osmand", params={"id": device["id"], "key": device["key"], **params})
        assert r.status_code == 200, r.text
    # a time that leaves the calendar once moved to UTC: a malformed request, said so
    r = client.get(
        "/osmand",
        params={"id": device["id"], "key": device["key"], "lat": lat, "lon": lon,
                "timestamp": "0001-01-01T00:00:00+10:00"},
    )  # fmt: skip
    assert r.status_code == 422 and "out of range" in r.json()["message"], r.text
    assert _stored(conn, device["id"]) == []
    assert positions.dropped(conn, device=device["id"]) == {
        "future": 1,
        "outside_service_area": 1,
        "no_location": 1,
    }


def test_impossible_speed_and_poor_accuracy_are_stored_flagged(client, conn, device):
    t = _now() - timedelta(minutes=10)
    a = point_inside(ANJU, 300, 0.3)
    b = point_inside(ANJU, 300, 0.7)  # kilometres away
    for i, (p, acc) in enumerate(((a, 5.0), (b, 5.0), (a, 5.0), (a, 500.0))):
        r = client.get(
            traccar_android_url(
                device, t=t + timedelta(seconds=20 * i), lon=p[0], lat=p[1], accuracy=acc
            )
        )
        assert r.status_code == 200
    rows = _stored(conn, device["id"])
    assert [r["flags"] for r in rows] == [[], ["speed"], [], ["accuracy"]]
    latest = conn.execute(
        "SELECT time FROM device_latest WHERE device = %s", (device["id"],)
    ).fetchone()
    assert latest["time"] == t + timedelta(seconds=40)  # the latest good fix


# -- OwnTracks -----------------------------------------------------------------------------


def test_owntracks_http_mode(client, conn, device):
    t = _now() - timedelta(seconds=5)
    lon, lat = point_inside(ANJU, 600)
    body = {
        "_type": "location",
        "acc": 13,
        "alt": 288,
        "batt": 40,
        "bs": 1,
        "conn": "m",
        "created_at": int(t.timestamp()) + 2,
        "lat": lat,
        "lon": lon,
        "m": 1,
        "t": "u",
        "tid": "p1",
        "topic": f"owntracks/jointgrid/{device['id']}",
        "tst": int(t.timestamp()),
        "vac": 1,
        "vel": 18,
    }
    auth = base64.b64encode(f"{device['id']}:{device['key']}".encode()).decode()
    headers = {
        "Authorization": f"Basic {auth}",
        "X-Limit-U": "jointgrid",
        "X-Limit-D": device["id"],
    }
    r = client.post("/owntracks", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == []
    (row,) = _stored(conn, device["id"])
    assert row["time"] == t and row["source"] == "owntracks"
    assert row["speed_mps"] == pytest.approx(18 / 3.6, rel=1e-5)  # km/h
    assert row["accuracy_m"] == 13
    # other messages are acknowledged as OwnTracks expects
    r = client.post("/owntracks", json={"_type": "status", "android": {}}, headers=headers)
    assert (r.status_code, r.json()) == (200, [])
    bad = base64.b64encode(f"{device['id']}:nope".encode()).decode()
    r = client.post("/owntracks", json=body, headers={"Authorization": f"Basic {bad}"})
    assert r.status_code == 401


# -- batches -------------------------------------------------------------------------------


def test_batch_is_idempotent_and_names_each_refused_fix(client, conn, device):
    t = _now() - timedelta(hours=1)
    lon, lat = point_inside(ANJU, 500)
    fixes = [
        {
            "lon": lon,
            "lat": lat + i * 0.0001,
            "time": (t + timedelta(seconds=30 * i)).isoformat(),
            "accuracy": 6,
        }
        for i in range(5)
    ]
    body = {"device": device["id"], "fixes": fixes}
    h = bearer(device["key"])
    first = client.post("/api/v1/positions", json=body, headers=h)
    assert first.status_code == 200, first.text
    assert first.json() == {"device": device["id"], "stored": 5, "duplicates": 0, "flagged": []}
    again = client.post("/api/v1/positions", json=body, headers=h)
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == 5
    assert len(_stored(conn, device["id"])) == 5

    bad = {
        "device": device["id"],
        "fixes": [
            {"lon": lon, "lat": lat, "time": (_now() - timedelta(minutes=1)).isoformat()},
            {"lon": lon, "lat": lat, "time": (_now() + timedelta(hours=1)).isoformat()},
            {"lon": 116.4, "lat": 39.9, "time": _now().isoformat()},
            {"lon": lon, "lat": lat, "time": (_now() - timedelta(days=400)).isoformat()},
            {"lon": lon, "lat": lat},
            {"lon": lon, "lat": lat, "time": "2026-12-01T08:00:00"},
            {"lon": lon, "lat": lat, "time": "0001-01-01T00:00:00+10:00"},  # before year 1 in UTC
        ],
    }
    r = client.post("/api/v1/positions", json=bad, headers=h)
    assert r.status_code == 422
    err = r.json()
    assert err["code"] == "fixes_refused"
    refused = {x["index"]: x["code"] for x in err["detail"]["refused"]}
    assert refused == {
        1: "future",
        2: "outside_service_area",
        3: "too_old",
        4: "invalid_input",
        5: "invalid_input",
        6: "invalid_input",
    }
    assert len(_stored(conn, device["id"])) == 5  # nothing of the refused batch was stored
    # another device's key may not post for this one
    r = client.post("/api/v1/positions", json=body, headers=bearer("jgd_" + "x" * 32))
    assert r.status_code == 401


def test_gcj02_and_bd09_fixes_are_stored_in_wgs84(client, conn, device):
    from gis.crs import from_wgs84

    lon, lat = point_inside(ANJU, 700)
    t = _now() - timedelta(minutes=5)
    g = from_wgs84(lon, lat, "gcj02")
    b = from_wgs84(lon, lat, "bd09")
    body = {
        "device": device["id"],
        "fixes": [
            {"lon": g[0], "lat": g[1], "time": t.isoformat(), "crs": "gcj02"},
            {
                "lon": b[0],
                "lat": b[1],
                "time": (t + timedelta(seconds=30)).isoformat(),
                "crs": "bd09",
            },
        ],
    }
    assert (
        client.post("/api/v1/positions", json=body, headers=bearer(device["key"])).status_code
        == 200
    )
    for row in _stored(conn, device["id"]):
        assert abs(row["lon"] - lon) < 1e-7 and abs(row["lat"] - lat) < 1e-7


# -- partitions ----------------------------------------------------------------------------


def test_retention_drops_whole_partitions_and_leaves_the_others_unchanged(conn, device):
    from gis.fixes import Fix

    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    positions.maintain(conn, retention_days=20, days_back=20)
    lon, lat = point_inside(ANJU, 500)
    dev = {**device}
    for days in (15, 12, 2, 1):
        fixes = [
            Fix(lon=lon, lat=lat + i * 1e-5, time=today - timedelta(days=days, seconds=-30 * i))
            for i in range(10)
        ]
        positions.store(conn, device=dev, fixes=fixes, source="batch", retention_days=20)
    names = {p["name"] for p in positions.partitions(conn)}
    old = {f"positions_p{(today - timedelta(days=d)).strftime('%Y%m%d')}" for d in (15, 12)}
    assert old <= names
    keep_before = conn.execute(
        "SELECT time, ST_AsEWKB(geom) AS g, flags FROM positions WHERE device = %s AND time > now() - interval '5 days' ORDER BY time",
        (device["id"],),
    ).fetchall()
    assert len(keep_before) == 20
    done = positions.maintain(conn, retention_days=10)
    assert old <= set(done["dropped"])
    names = {p["name"] for p in positions.partitions(conn)}
    assert not (old & names)
    keep_after = conn.execute(
        "SELECT time, ST_AsEWKB(geom) AS g, flags FROM positions WHERE device = %s ORDER BY time",
        (device["id"],),
    ).fetchall()
    assert keep_after == keep_before
    # the partitions of the retention window, and two days ahead, exist
    for d in range(-2, 10):
        assert f"positions_p{(datetime.now(UTC) - timedelta(days=d)).strftime('%Y%m%d')}" in names


def test_positions_carry_the_side_and_are_partitioned(conn):
    row = conn.execute(
        "SELECT c.relkind, pg_get_partkeydef(c.oid) AS key FROM pg_class c WHERE c.relname = 'positions'"
    ).fetchone()
    assert row["relkind"] == "p" and row["key"] == 'RANGE ("time")'


def test_a_fix_whose_day_has_no_partition_makes_it_and_lands(client, conn, device):
    t = _now() - timedelta(seconds=20)
    day = f"positions_p{t.strftime('%Y%m%d')}"
    conn.execute(f"DROP TABLE {day}")  # rolled back with the test
    lon, lat = point_inside(ANJU, 450)
    r = client.get(traccar_android_url(device, t=t, lon=lon, lat=lat, accuracy=4.0))
    assert r.status_code == 200, r.text
    assert [x["time"] for x in _stored(conn, device["id"])] == [t]
    assert day in {p["name"] for p in positions.partitions(conn)}
