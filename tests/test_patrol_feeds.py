"""The patrol layers for people and platforms: the OGC collections, the map's layers and team
popup, the dashboard's coverage shares, and what routing will read."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.settings import PatrolSettings
from api.usecases.positions import batch
from layers import devices, patrols, positions
from tests.conftest import SharedSource, bearer
from tests.geo import ANJU, point_inside

SETTINGS = PatrolSettings()


@pytest.fixture()
def public_client(
    conn: Any, api_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """An HTTP client on an app with JOINTGRID_PUBLIC_FEEDS=true, sharing the test's transaction."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from layers.db import Database

    monkeypatch.setenv("JOINTGRID_PUBLIC_FEEDS", "true")
    app = create_app(database=Database(SharedSource(conn)))
    assert app.state.public_feeds
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture()
def patrolling(conn: Any) -> dict[str, Any]:
    """A member of an Anju team on patrol: a device with ten fixes over the last five minutes."""
    team = conn.execute(
        # the last Anju team: the tests that commit fixes use the first one
        "SELECT code, name FROM teams WHERE side = %s ORDER BY code DESC LIMIT 1",
        (ANJU,),
    ).fetchone()
    member = f"巡逻队员 {uuid.uuid4().hex[:6]}"
    key, dev = devices.add_device(conn, team=team["code"], member_name=member)
    now = datetime.now(UTC).replace(microsecond=0)
    pts = [point_inside(ANJU, 300 + 20 * i, 0.5) for i in range(10)]
    body = {
        "device": dev["id"],
        "fixes": [
            {"lon": x, "lat": y, "time": (now - timedelta(seconds=300 - 30 * i)).isoformat()}
            for i, (x, y) in enumerate(pts)
        ],
    }
    batch(conn, key=key, body=body, settings=SETTINGS)
    patrols.apply_all(conn, gap_s=SETTINGS.session_gap_s)  # the server's patrol worker
    return {
        "team": team["code"],
        "team_name": team["name"],
        "member": member,
        "device": dev["id"],
        "last": pts[-1],
    }


def test_live_collections_are_never_anonymous_even_with_public_feeds(
    public_client, api_keys, patrolling
):
    # the other feeds are open to anonymous callers here ...
    assert public_client.get("/ogc/collections/teams/items").status_code == 200
    assert public_client.get("/ogc/collections/patrol_coverage/items").status_code == 200
    # ... but not the live positions and tracks, in any form
    for path in (
        "/ogc/collections/team_positions",
        "/ogc/collections/team_positions/items",
        f"/ogc/collections/team_positions/items/{patrolling['team']}",
        "/ogc/collections/team_positions/queryables",
        "/ogc/collections/patrol_tracks/items",
        "/ogc/collections/patrol_tracks/items?f=html",
    ):
        r = public_client.get(path)
        assert r.status_code == 401, (path, r.status_code)
        assert r.json()["code"] == "unauthenticated"
    # with a key (a feed key will do) they answer
    r = public_client.get("/ogc/collections/team_positions/items", headers=bearer(api_keys["feed"]))
    assert r.status_code == 200, r.text
    feats = {f["id"]: f for f in r.json()["features"]}
    f = feats[patrolling["team"]]
    assert f["geometry"]["coordinates"] == pytest.approx(list(patrolling["last"]), abs=1e-7)
    # team level only: nothing names a member or a device
    text = r.text
    assert patrolling["member"] not in text and patrolling["device"] not in text
    assert set(f["properties"]) <= {"team", "name", "side", "time"}
    tracks = public_client.get(
        "/ogc/collections/patrol_tracks/items?limit=1000", headers=bearer(api_keys["feed"])
    )
    assert tracks.status_code == 200
    mine = [t for t in tracks.json()["features"] if t["properties"]["team"] == patrolling["team"]]
    assert mine and mine[-1]["geometry"]["type"] == "LineString"
    assert patrolling["device"] not in tracks.text


def test_team_popup_and_live_map_layers(client, patrolling):
    r = client.get(f"/map/team/{patrolling['team']}")
    assert r.status_code == 200, r.text
    assert patrolling["member"] in r.text  # on duty: a fresh fix
    assert "分钟前" in r.text and "公里" in r.text and "未结案件" in r.text
    layer = client.get("/map/data/layers/team_positions")
    assert layer.status_code == 200
    assert layer.headers["cache-control"] == "no-store"
    assert patrolling["team"] in {f["id"] for f in layer.json()["features"]}
    tracks = client.get("/map/data/layers/patrol_tracks_today")
    assert any(f["properties"].get("team") == patrolling["team"] for f in tracks.json()["features"])
    page = client.get("/map")
    assert page.status_code == 200
    assert '"refresh_s": 15' in page.text and '"popup_url": "/map/team/"' in page.text
    assert '"colour_by"' in page.text and '"gap_days": 7' in page.text


def test_coverage_shares_for_the_dashboard(client, patrolling):
    r = client.get("/api/v1/patrols/coverage")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert 0 < doc["sides"][ANJU] <= 1
    assert any(t["team"] == patrolling["team"] and t["minutes"] > 0 for t in doc["teams"])
    assert any(d["side"] == ANJU and d["share"] > 0 for d in doc["trend"])
    page = client.get("/dashboard")
    assert page.status_code == 200 and "本周边界带巡防覆盖率" in page.text


def test_routing_can_read_each_members_latest_fresh_fix(conn, patrolling):
    now = datetime.now(UTC)
    got = {r["member_id"]: r for r in positions.fresh_member_fixes(conn, max_age_s=600, now=now)}
    mine = [r for r in got.values() if r["device"] == patrolling["device"]]
    assert len(mine) == 1 and mine[0]["team"] == patrolling["team"]
    assert (mine[0]["lon"], mine[0]["lat"]) == pytest.approx(patrolling["last"], abs=1e-9)
    later = now + timedelta(minutes=30)  # no longer fresh
    stale = positions.fresh_member_fixes(conn, max_age_s=600, now=later)
    assert patrolling["device"] not in {r["device"] for r in stale}
