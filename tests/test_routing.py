"""Routing decisions on the real Anju - Tongnan border (table-driven), through the HTTP API."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest

from gis.crs import from_wgs84
from tests.conftest import bearer
from tests.geo import ANJU, TONGNAN, distance_to_other, line_vertex, point_inside, side_of

MECHANISM_BY_CATEGORY = [
    ("theft", "joint_defense"),
    ("land_dispute", "joint_mediation"),
    ("river_pollution", "joint_governance"),
    ("fire", "joint_response"),
    ("illegal_construction", "joint_management"),
    ("cross_region_service", "joint_building"),
]


def body(lon: float, lat: float, category: str = "land_dispute", **extra):  # type: ignore[no-untyped-def]
    return {"lon": lon, "lat": lat, "category": category, **extra}


def route(client, b):  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/route", json=b)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("side", [ANJU, TONGNAN])
@pytest.mark.parametrize(("category", "mechanism"), MECHANISM_BY_CATEGORY)
def test_each_side_each_mechanism_near_the_line(client, side, category, mechanism):
    lon, lat = point_inside(side, 300, 0.3)
    d = route(client, body(lon, lat, category))
    other = TONGNAN if side == ANJU else ANJU
    assert d["side"] == side and d["lead_side"] == side
    assert d["cross_boundary"] is True
    assert d["cross_boundary_reasons"] == ["border_zone"]
    assert d["mechanism"] == mechanism
    assert d["sides"] == [side, other]
    assert d["distance_to_border_m"] == pytest.approx(distance_to_other(lon, lat, side), rel=0.01)
    # at least one contact per involved side: the grid chief and the police officer
    for s in (side, other):
        roles = {c["role"] for c in d["contacts"] if c["side"] == s}
        assert {"grid_chief", "police_officer"} <= roles
    steps = [s["step"] for s in d["routing"]["trace"]]
    assert steps[:4] == ["place", "border_zone", "mechanism", "lead_side"]


@pytest.mark.parametrize(("metres", "cross"), [(1950, True), (2100, False)])
@pytest.mark.parametrize("side", [ANJU, TONGNAN])
def test_the_edge_of_the_zone(client, side, metres, cross):
    lon, lat = point_inside(side, metres, 0.6)
    d = route(client, body(lon, lat, "theft"))
    assert d["cross_boundary"] is cross
    if cross:
        assert d["mechanism"] == "joint_defense" and d["teams"]
    else:
        assert d["mechanism"] is None and d["teams"] == [] and d["sides"] == [side]
        assert {c["side"] for c in d["contacts"]} == {side}
        assert "single-side" in d["routing"]["trace"][2]["says"]


def test_far_from_the_other_side_is_not_cross_boundary(client):
    # Near the outer (western) edge of Anju, ~40 km from Tongnan.
    d = route(client, body(105.25, 30.35, "fire"))
    assert d["side"] == ANJU and d["cross_boundary"] is False and d["mechanism"] is None
    assert d["distance_to_border_m"] > 20_000


def test_a_point_on_the_line_itself(client):
    lon, lat = line_vertex(0.4)
    d = route(client, body(lon, lat, "theft"))
    assert d["distance_to_border_m"] == 0
    assert set(d["sides"]) == {ANJU, TONGNAN}
    assert d["cross_boundary"] and d["mechanism"] == "joint_defense"


def test_inside_the_joint_grid(client, conn):
    row = conn.execute(
        "SELECT code, side, ST_X(ST_PointOnSurface(geom)) AS x, ST_Y(ST_PointOnSurface(geom)) AS y"
        " FROM grids WHERE joint ORDER BY code LIMIT 1"
    ).fetchone()
    assert row is not None, "the demo must have a joint grid"
    d = route(client, body(row["x"], row["y"], "neighbor_dispute"))
    assert "joint_grid" in d["cross_boundary_reasons"]
    assert set(d["sides"]) == {ANJU, TONGNAN}
    assert d["mechanism"] == "joint_mediation"
    step = next(s for s in d["routing"]["trace"] if s["step"] == "joint_grid")
    assert row["code"] in step["data"]["grids"]


def test_a_coverage_gap_near_the_border_still_finds_contacts(client, conn):
    lon, lat = point_inside(ANJU, 500, 0.5)
    # Make a gap: remove the grid that contains the point (rolled back after the test).
    gone = conn.execute(
        "DELETE FROM grids WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint(%s, %s), 4326))"
        " RETURNING code",
        (lon, lat),
    ).fetchall()
    assert gone
    d = route(client, body(lon, lat, "theft"))
    chief = next(c for c in d["contacts"] if c["side"] == ANJU and c["role"] == "grid_chief")
    assert chief["unit_code"] not in {g["code"] for g in gone}
    assert chief["distance_m"] > 0  # the nearest grid, not a containing one
    assert d["cross_boundary"] is True


@pytest.mark.parametrize("crs", ["gcj02", "bd09"])
def test_shifted_coordinates_whose_raw_numbers_fall_on_the_other_side(client, crs):
    # Find a point inside Anju whose GCJ-02/BD-09 numbers, read as WGS84, land in Tongnan.
    found = None
    for i in range(1, 40):
        for metres in (100, 200, 300, 500):
            lon, lat = point_inside(ANJU, metres, i / 40)
            sx, sy = from_wgs84(lon, lat, crs)
            if side_of(sx, sy) == TONGNAN:
                found = (lon, lat, sx, sy)
                break
        if found:
            break
    assert found, "the offsets must move some near-line point across it"
    lon, lat, sx, sy = found
    naive = route(client, body(sx, sy, "theft"))
    right = route(client, body(sx, sy, "theft", crs=crs))
    assert naive["side"] == TONGNAN
    assert right["side"] == ANJU
    assert right["location"]["coordinates"] == pytest.approx([lon, lat], abs=1e-6)


def test_parties_from_the_other_side(client):
    d = route(client, body(105.25, 30.35, "land_dispute", parties_sides=[ANJU, TONGNAN]))
    assert d["cross_boundary_reasons"] == ["parties"]
    assert d["mechanism"] == "joint_mediation"
    assert d["sides"] == [ANJU, TONGNAN]


def test_unknown_party_side_is_rejected(client):
    r = client.post("/api/v1/route", json=body(105.25, 30.35, parties_sides=["999999"]))
    assert r.status_code == 422
    assert r.json()["code"] == "unknown_side"
    assert set(r.json()["detail"]["valid"]) == {ANJU, TONGNAN}


def test_an_extent_crossing_the_line(client):
    a = point_inside(ANJU, 2200, 0.5)
    t = point_inside(TONGNAN, 300, 0.5)
    d = route(
        client,
        body(
            *a, "river_pollution", extent={"type": "LineString", "coordinates": [list(a), list(t)]}
        ),
    )
    assert d["cross_boundary_reasons"] == ["extent_crosses"]
    assert d["mechanism"] == "joint_governance"


def test_river_pollution_reaches_river_chiefs_on_both_sides(client, conn):
    # Where the demo river crosses the line: midway between the two sides' river stretches.
    row = conn.execute(
        "SELECT ST_X(c) AS x, ST_Y(c) AS y FROM (SELECT ST_Centroid(ST_ShortestLine("
        " (SELECT ST_Union(geom) FROM chiefs WHERE role = 'river' AND side = %s),"
        " (SELECT ST_Union(geom) FROM chiefs WHERE role = 'river' AND side = %s))) AS c) s",
        (ANJU, TONGNAN),
    ).fetchone()
    d = route(client, body(row["x"], row["y"], "river_pollution"))
    river = {c["side"] for c in d["contacts"] if c["role"] == "river"}
    assert river == {ANJU, TONGNAN}


def test_report_page_errors_are_clear(client):
    cases = [
        ({"lon": 105.5, "lat": 30.2, "category": "nope"}, "unknown_category"),
        ({"lon": 105.5, "lat": 30.2, "category": "theft", "crs": "x"}, "unknown_crs"),
        (
            {"lon": 105.5, "lat": 30.2, "category": "theft", "severity": "purple"},
            "unknown_severity",
        ),
        ({"category": "theft"}, "invalid_input"),
        ({"lon": 30.2, "lat": 105.5, "category": "theft"}, "invalid_coordinates"),
        (
            {"location": {"type": "Point", "coordinates": [105.5]}, "category": "theft"},
            "invalid_geometry",
        ),
        (
            {
                "lon": 105.5,
                "lat": 30.2,
                "category": "theft",
                "extent": {
                    "type": "Polygon",
                    "coordinates": [
                        [[105.5, 30.2], [105.6, 30.3], [105.6, 30.2], [105.5, 30.3], [105.5, 30.2]]
                    ],
                },
            },
            "invalid_geometry",
        ),
        (
            {"lon": 105.5, "lat": 30.2, "category": "theft", "occurred_at": "2026-01-01T08:00:00"},
            "invalid_request",
        ),
        (
            {"lon": 105.5, "lat": 30.2, "category": "theft", "description": "x" * 4001},
            "invalid_request",
        ),
        ({"lon": 105.5, "lat": 30.2, "category": "theft", "colour": "red"}, "invalid_request"),
    ]
    for b, code in cases:
        r = client.post("/api/v1/incidents", json=b)
        assert r.status_code == 422, (b, r.text)
        assert r.json()["code"] == code, (b, r.json())
        assert r.json()["message"]
    codes = client.post("/api/v1/route", json=cases[0][0]).json()["detail"]["valid"]
    assert "land_dispute" in codes


def test_oversized_extent_is_refused(client, catalogue):
    n = catalogue.max_extent_vertices + 1
    coords = [[105.5 + i * 1e-6, 30.2] for i in range(n)]
    r = client.post(
        "/api/v1/route",
        json=body(105.5, 30.2, extent={"type": "LineString", "coordinates": coords}),
    )
    assert r.status_code == 422 and r.json()["code"] == "geometry_too_large"


def test_report_then_duplicate_is_flagged_not_merged(client):
    lon, lat = point_inside(TONGNAN, 800, 0.35)
    first = client.post("/api/v1/incidents", json=body(lon, lat, "illegal_dumping"))
    assert first.status_code == 201
    second = client.post("/api/v1/incidents", json=body(lon + 0.001, lat, "illegal_dumping"))
    assert second.status_code == 201
    assert second.json()["possible_duplicate_of"] == first.json()["id"]
    assert second.json()["status"] == "reported"
    other = client.post("/api/v1/incidents", json=body(lon + 0.001, lat, "theft"))
    assert other.json()["possible_duplicate_of"] is None


def test_report_stores_case_and_first_event(client):
    lon, lat = point_inside(ANJU, 300, 0.45)
    r = client.post("/api/v1/incidents", json=body(lon, lat, "land_dispute"))
    assert r.status_code == 201
    case = r.json()
    for field in (
        "id",
        "status",
        "category",
        "severity",
        "location",
        "side",
        "sides",
        "distance_to_border_m",
        "cross_boundary",
        "cross_boundary_reasons",
        "mechanism",
        "lead_side",
        "teams",
        "contacts",
        "grid",
        "police_grid",
        "due_at",
        "possible_duplicate_of",
    ):
        assert field in case
    assert case["routing"]["trace"]
    got = client.get(f"/api/v1/incidents/{case['id']}").json()
    assert got["code"] == case["code"]
    ev = client.get(f"/api/v1/incidents/{case['code']}/events").json()["events"]
    assert [e["action"] for e in ev] == ["report"]


def test_unknown_case_is_404_with_body(client):
    r = client.get(f"/api/v1/incidents/{uuid.uuid4()}")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_fifty_parallel_retries_make_exactly_one_case(live_server, db_url, api_keys):
    import psycopg

    key = f"retry-{uuid.uuid4()}"
    lon, lat = point_inside(ANJU, 600, 0.2)
    b = body(lon, lat, "theft", description="parallel retry test")

    def post(_: int) -> httpx.Response:
        return httpx.post(
            f"{live_server}/api/v1/incidents",
            json=b,
            headers={"Idempotency-Key": key, **bearer(api_keys["grid_worker:510904"])},
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(post, range(50)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1 and statuses.count(200) == 49, statuses
    assert len({r.json()["id"] for r in responses}) == 1
    with psycopg.connect(db_url) as c:
        n = c.execute(
            "SELECT count(*) FROM incidents WHERE idempotency_key LIKE %s", ("%:" + key,)
        ).fetchone()
        events = c.execute(
            "SELECT count(*) FROM incident_events e JOIN incidents i ON i.id = e.incident_id"
            " WHERE i.idempotency_key LIKE %s",
            ("%:" + key,),
        ).fetchone()
    assert n == (1,) and events == (1,)


def test_occurred_at_picks_the_duty_teams(client):
    lon, lat = point_inside(ANJU, 300, 0.3)
    day = route(client, body(lon, lat, "theft", occurred_at="2026-11-25T10:00:00+08:00"))
    night = route(client, body(lon, lat, "theft", occurred_at="2026-11-25T03:00:00+08:00"))
    for d in (day, night):
        step = next(s for s in d["routing"]["trace"] if s["step"] == "teams")
        assert step["data"]["at"].startswith("2026-11-2")
        assert all(t["on_duty"] for t in d["teams"]) or "on duty" in step["says"]
    assert datetime.fromisoformat(day["due_at"]) > datetime.now(UTC)
