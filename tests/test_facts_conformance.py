"""Conformance of the one facts engine (``jointgrid_facts()``) on a hand-built world.

Two sides A and B (squares sharing the meridian 120.1 E near 45 N, far from every other
layer), with a grid covering only the west half of A (the east half is a gap in A's grid
coverage), a joint grid across the line, police grids, a team and a river chief; built in the
test's transaction and rolled back with it. Each case is checked against the engine as the
report path asks it (one point) and as the batch asks it (many points, with and without the
far sides), and against an independent computation: PostGIS geography distances from the
point to the whole polygons (not the engine's boundary pieces, nor its index prefilters).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from shapely.geometry import LineString

from gis.errors import OutsideServiceArea
from gis.routing import Report, decide, signature
from layers import locate

A, B = "880001", "880002"
NOW = datetime(2026, 11, 27, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai
ALWAYS = {"timezone": "Asia/Shanghai", "shifts": [
    {"name": "all", "days": [1, 2, 3, 4, 5, 6, 7], "start": "00:00", "end": "24:00"}]}  # fmt: skip


def _box(x0: float, y0: float, x1: float, y1: float) -> str:
    return f"SRID=4326;MULTIPOLYGON((({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0})))"


@pytest.fixture()
def world(conn: Any) -> Any:
    ex = conn.execute
    for side, x0, x1 in ((A, 120.0, 120.1), (B, 120.1, 120.2)):
        ex("INSERT INTO areas (code, name, level, side, geom) VALUES (%s, %s, 'district', %s, %s)",
           (side, f"side {side}", side, _box(x0, 45.0, x1, 45.1)))  # fmt: skip
        ex("INSERT INTO areas (code, name, level, parent_code, side, geom)"
           " VALUES (%s, %s, 'town', %s, %s, %s)",
           (side + "001", f"town {side}", side, side, _box(x0, 45.0, x1, 45.1)))  # fmt: skip
        ex("INSERT INTO areas (code, name, level, parent_code, side, geom)"
           " VALUES (%s, %s, 'village', %s, %s, %s)",
           (side + "001001", f"village {side}", side + "001", side,
            _box(x0, 45.0, x1, 45.1)))  # fmt: skip
    grids = [
        (A + "001001001", "A west", A, False, _box(120.0, 45.0, 120.05, 45.1)),
        (A + "001001002", "A-B joint", A, True, _box(120.09, 45.05, 120.11, 45.06)),
        (B + "001001001", "B all", B, False, _box(120.1, 45.0, 120.2, 45.1)),
    ]
    for code, name, side, joint, geom in grids:
        ex("INSERT INTO grids (code, name, village_code, side, joint, chief_name, chief_phone,"
           " geom) VALUES (%s, %s, %s, %s, %s, %s, '1', %s)",
           (code, name, code[:12], side, joint, f"chief {name}", geom))  # fmt: skip
    for code, side, x0, x1 in (("PA", A, 120.0, 120.1), ("PB", B, 120.1, 120.2)):
        ex("INSERT INTO police_grids (code, name, station, officer_name, side, geom)"
           " VALUES (%s, %s, 'st', %s, %s, %s)",
           (code + "-880", f"beat {code}", f"officer {code}", side, _box(x0, 45.0, x1, 45.1)))  # fmt: skip
    ex("INSERT INTO teams (code, name, kind, side, sides, mechanisms, roster, patrol_area, base)"
       " VALUES ('T880', 'line team', 'joint', %s, %s, %s, %s, %s,"
       " 'SRID=4326;POINT(120.1 45.02)')",
       (A, [A, B], ["joint_defense", "joint_governance", "joint_mediation", "joint_response",
                    "joint_management", "joint_building"],
        __import__("json").dumps(ALWAYS), _box(120.08, 45.0, 120.12, 45.1)))  # fmt: skip
    ex("INSERT INTO chiefs (code, role, side, name, feature_name, geom) VALUES"
       " ('RC880', 'river', %s, 'river chief', 'a river', "
       " 'SRID=4326;LINESTRING(120.0 45.07, 120.05 45.07)')", (A,))  # fmt: skip
    return conn


def _geo_m(conn: Any, x: float, y: float, geom_sql: str, *params: Any) -> float:
    """The independent distance: point to the whole geometry, on the ellipsoid."""
    row = conn.execute(
        f"SELECT ST_Distance(ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography,"
        f" ({geom_sql})::geography) AS d",
        (x, y, *params),
    ).fetchone()
    return float(row["d"])


def _to_b(conn: Any, x: float, y: float) -> float:
    return _geo_m(conn, x, y, "SELECT geom FROM areas WHERE code = %s", B)


def _at_distance_from_b(conn: Any, metres: float, lat: float) -> tuple[float, float]:
    """The point of A on the parallel ``lat`` at ``metres`` from B (bisection, 1 mm)."""
    lo, hi = 120.05, 120.1  # lo: farther than 2.5 km, hi: on the line
    while True:
        mid = (lo + hi) / 2
        d = _to_b(conn, mid, lat)
        if abs(d - metres) < 0.001:
            return mid, lat
        lo, hi = (mid, hi) if d > metres else (lo, mid)


def _facts(conn: Any, x: float, y: float, catalogue: Any, **kw: Any) -> Any:
    return locate.facts(conn, lon=x, lat=y, radius_m=catalogue.border_zone_m,
                        mechanism=kw.pop("mechanism", "joint_defense"), teams_if_cross=True,
                        **kw)  # fmt: skip


def _batch(conn: Any, pts: list[tuple[float, float]], catalogue: Any, *, far: bool) -> list[Any]:
    many = locate.facts_of_points(
        conn, [p[0] for p in pts], [p[1] for p in pts], radius_m=catalogue.border_zone_m,
        mechanism=["joint_defense"] * len(pts), far=far,
    )  # fmt: skip
    return [locate.to_facts(x, y, many.docs[k]) for (x, y), k in zip(pts, many.keys, strict=True)]


def _decide(facts: Any, x: float, y: float, catalogue: Any, category: str = "theft", **kw: Any):  # type: ignore[no-untyped-def]
    rep = Report(x, y, category, "yellow", NOW, **kw)
    return decide(
        rep, facts, catalogue, now=NOW, known_sides=frozenset(s.code for s in facts.sides)
    )


def test_on_the_line(world, catalogue):
    x, y = 120.1, 45.03
    f = _facts(world, x, y, catalogue)
    on = [(s.code, s.contains, s.distance_m) for s in f.sides if s.code in (A, B)]
    assert on == [(A, True, 0.0), (B, True, 0.0)]
    # and the nearest other side, however far (here a real district, thousands of km away)
    assert len(f.sides) == 3 and min(s.distance_m for s in f.sides if not s.contains) > 1e6
    assert _to_b(world, x, y) == 0.0
    d = _decide(f, x, y, catalogue)
    assert d.placement.on_line and d.placement.distance_to_border_m == 0.0
    # On the line every other side reported is involved, the far nearest one too (a rule of
    # ``decide`` kept as it is: see docs/performance.md, #14).
    assert d.sides[0] == A and {A, B} <= set(d.sides) and d.reasons == ("border_zone",)
    assert [t.code for t in d.teams][:1] == ["T880"]  # covers the point and is on duty
    assert _batch(world, [(x, y)], catalogue, far=True)[0] == f


@pytest.mark.parametrize(("metres", "cross"), [(1999.5, True), (2000.5, False)])
def test_at_the_edge_of_the_zone(world, catalogue, metres, cross):
    x, y = _at_distance_from_b(world, metres, 45.03)
    f = _facts(world, x, y, catalogue)
    b = next(s for s in f.sides if s.code == B)
    assert b.distance_m == pytest.approx(_to_b(world, x, y), abs=0.01)
    assert b.distance_m == pytest.approx(metres, abs=0.01)
    d = _decide(f, x, y, catalogue)
    assert d.cross_boundary is cross
    assert d.placement.distance_to_border_m == pytest.approx(metres, abs=0.01)
    assert d.sides == ((A, B) if cross else (A,))
    # the batch, with and without the far sides: the same choices
    full, near = (
        _batch(world, [(x, y)], catalogue, far=True)[0],
        _batch(world, [(x, y)], catalogue, far=False)[0],
    )
    assert full == f
    assert [s.code for s in near.sides] == ([A, B] if cross else [A])
    assert signature(_decide(near, x, y, catalogue)) == signature(d)


def test_in_the_joint_grid(world, catalogue):
    x, y = 120.095, 45.055
    f = _facts(world, x, y, catalogue)
    joint = [g for g in f.grids_here if g.joint]
    assert [g.code for g in joint] == [A + "001001002"]
    spans = world.execute(
        "SELECT array_agg(a.code ORDER BY a.code) AS s FROM areas a, grids g WHERE g.code = %s"
        " AND a.level = 'district' AND ST_Area(ST_Intersection(a.geom, g.geom)) > 0",
        (A + "001001002",),
    ).fetchone()["s"]
    assert list(joint[0].spans) == spans == [A, B]
    d = _decide(f, x, y, catalogue)
    assert d.reasons == ("border_zone", "joint_grid") and d.sides == (A, B)


def test_in_a_gap_of_the_grid_coverage(world, catalogue):
    x, y = 120.07, 45.08  # in A, east of A's only ordinary grid, 2.4 km from B
    f = _facts(world, x, y, catalogue, mechanism=None)
    assert not [g for g in f.grids_here if g.side == A]
    want = _geo_m(world, x, y, "SELECT geom FROM grids WHERE code = %s", A + "001001001")
    other = _geo_m(world, x, y, "SELECT geom FROM grids WHERE code = %s", A + "001001002")
    assert want < other
    g = f.grid_for(A)
    assert g is not None and g.code == A + "001001001"
    assert g.distance_m == pytest.approx(want, abs=0.01)
    d = _decide(f, x, y, catalogue)
    assert not d.cross_boundary
    chief = next(c for c in d.contacts if c.role == "grid_chief")
    assert (chief.unit_code, round(chief.distance_m)) == (A + "001001001", round(want))
    assert next(c for c in d.contacts if c.role == "police_officer").distance_m == 0.0


def test_with_parties_from_the_other_side(world, catalogue):
    x, y = 120.02, 45.02
    f = _facts(world, x, y, catalogue, sides=[B])
    b = next(s for s in f.sides if s.code == B)
    assert b.distance_m == pytest.approx(_to_b(world, x, y), abs=0.01)
    d = _decide(f, x, y, catalogue, parties_sides=(B,))
    assert d.reasons == ("parties",) and d.sides == (A, B)
    gb = next(c for c in d.contacts if c.side == B and c.role == "grid_chief")
    assert gb.distance_m == pytest.approx(
        _geo_m(world, x, y, "SELECT geom FROM grids WHERE code = %s", B + "001001001"), abs=0.01
    )
    # without the parties the far side B is only the nearest other side
    assert not _decide(_facts(world, x, y, catalogue), x, y, catalogue).cross_boundary


@pytest.mark.parametrize(("end", "crosses"), [(120.15, True), (120.06, False)])
def test_with_an_extent(world, catalogue, end, crosses):
    x, y = 120.03, 45.09
    ext = LineString([(x, y), (end, y)])
    f = _facts(world, x, y, catalogue, extent=ext)
    touched = world.execute(
        "SELECT array_agg(code ORDER BY code) AS s FROM areas WHERE level = 'district'"
        " AND code IN (%s, %s) AND ST_Intersects(geom, ST_GeomFromText(%s, 4326))",
        (A, B, ext.wkt),
    ).fetchone()["s"]
    assert list(f.extent_sides or ()) == touched == ([A, B] if crosses else [A])
    d = _decide(f, x, y, catalogue, extent=ext)
    assert ("extent_crosses" in d.reasons) is crosses


def test_a_chief_within_the_zone(world, catalogue):
    x, y = 120.03, 45.075
    f = _facts(world, x, y, catalogue, mechanism="joint_governance")
    rc = next(c for c in f.chiefs if c.code == "RC880")
    assert rc.distance_m == pytest.approx(
        _geo_m(world, x, y, "SELECT geom FROM chiefs WHERE code = 'RC880'"), abs=0.01
    )
    d = _decide(f, x, y, catalogue, "river_pollution")
    assert any(c.role == "river" and c.unit_code == "RC880" for c in d.contacts)
    assert not any(c.role == "river" for c in _decide(f, x, y, catalogue, "theft").contacts)


@pytest.mark.parametrize(("metres", "outside"), [(60.0, False), (5000.0, True)])
def test_outside_the_service_area(world, catalogue, metres, outside):
    # south of A, at an independent distance; the tolerance is 100 m
    lo, hi = 44.9, 45.0
    while True:
        mid = (lo + hi) / 2
        dist = _geo_m(world, 120.03, mid, "SELECT geom FROM areas WHERE code = %s", A)
        if abs(dist - metres) < 0.01:
            break
        lo, hi = (mid, hi) if dist > metres else (lo, mid)
    f = _facts(world, 120.03, mid, catalogue)
    assert not f.containing_sides()
    near = f.nearest_side()
    assert near is not None and near.code == A
    assert near.distance_m == pytest.approx(metres, abs=0.02)
    if outside:
        with pytest.raises(OutsideServiceArea):
            _decide(f, 120.03, mid, catalogue)
    else:
        d = _decide(f, 120.03, mid, catalogue)
        assert d.placement.side == A and d.placement.snapped_m == pytest.approx(metres, abs=0.02)
    assert _batch(world, [(120.03, mid)], catalogue, far=False)[0].nearest_side() == near


def test_many_points_at_once_are_each_point_alone(world, catalogue):
    pts = [(120.1, 45.03), (120.095, 45.055), (120.07, 45.08), (120.02, 45.02), (120.15, 45.05)]
    for p, f in zip(pts, _batch(world, pts, catalogue, far=True), strict=True):
        assert f == _facts(world, *p, catalogue)


def test_open_statuses_are_defined_once(conn):
    from gis.workflow import OPEN_STATUSES, STATUSES

    rows = conn.execute(
        "SELECT s, jointgrid_is_open(s) AS o FROM unnest(%s::text[]) s", (list(STATUSES),)
    ).fetchall()
    assert {r["s"] for r in rows if r["o"]} == set(OPEN_STATUSES)
    assert len(rows) == len(STATUSES) > len(OPEN_STATUSES)
    # the partial indexes over open cases use it, and a query written with it reaches them
    defs = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'incidents'"
        " AND indexdef LIKE '%% WHERE %%status%%'"
    ).fetchall()
    assert defs and all("jointgrid_is_open(status)" in d["indexdef"] for d in defs), defs
    conn.execute("SET LOCAL enable_seqscan = off")
    plan = conn.execute(
        "EXPLAIN SELECT id FROM incidents WHERE jointgrid_is_open(status) AND due_at < now()"
    ).fetchall()
    text = " ".join(str(r) for r in plan)
    # a partial index over open cases serves it: its predicate matched the query's
    assert any(d["indexname"] in text for d in defs), text
