"""The spatial store on real PostGIS: border derivation, locate, distances, errors."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pyproj
import pytest
import shapely
from psycopg import sql as q
from shapely.geometry import shape
from shapely.ops import transform

from gis.crs import from_wgs84
from layers import locate

ROOT = Path(__file__).resolve().parents[1]
ANJU, TONGNAN = "510904", "500152"
TO_4544 = pyproj.Transformer.from_crs(4326, 4544, always_xy=True).transform


def districts() -> dict[str, shapely.Geometry]:
    fc = json.loads((ROOT / "boundary_data" / "districts.geojson").read_text())
    return {f["properties"]["code"]: shape(f["geometry"]) for f in fc["features"]}


def border_points(conn, n: int = 12) -> list[tuple[float, float]]:
    rows = conn.execute(
        "SELECT ST_X(p) AS x, ST_Y(p) AS y FROM border b, "
        "generate_series(1, %s) i, LATERAL (SELECT ST_LineInterpolatePoint("
        "ST_GeometryN(b.geom, 1), i::float8 / (%s + 1)) AS p) s WHERE b.kind = 'line'",
        (n, n),
    ).fetchall()
    return [(r["x"], r["y"]) for r in rows]


def test_shared_line_is_about_56_to_57_km(conn):
    row = conn.execute("SELECT sides, length_m FROM border WHERE kind = 'line'").fetchone()
    assert sorted(row["sides"]) == [TONGNAN, ANJU]
    assert 56_000 < row["length_m"] < 57_000


def test_border_zone_is_the_strip_within_the_width(conn, catalogue):
    rows = conn.execute(
        "SELECT side, width_m, ST_Area(geom::geography) AS area,"
        " ST_Area(ST_Difference(geom, (SELECT a.geom FROM areas a WHERE a.code = border.side))::geography) AS outside"
        " FROM border WHERE kind = 'zone' ORDER BY side"
    ).fetchall()
    assert [r["side"] for r in rows] == [TONGNAN, ANJU]
    for r in rows:
        assert r["width_m"] == catalogue.border_zone_m
        # roughly line length x width, and entirely inside its own side
        assert 0.7 * 56_500 * 2000 < r["area"] < 1.3 * 56_500 * 2000
        assert r["outside"] < 1e-6 * r["area"]  # only float noise from the metric round trip


def test_rederiving_the_border_is_one_command_and_stable(conn, catalogue):
    from layers import border

    before = conn.execute("SELECT id, length_m, area_m2 FROM border ORDER BY id").fetchall()
    after = border.derive(conn, width_m=catalogue.border_zone_m)
    assert [r["id"] for r in after] == [r["id"] for r in before]
    wider = border.derive(conn, width_m=3000)
    zones = {r["id"]: r for r in wider if r["kind"] == "zone"}
    old = {r["id"]: r for r in before}
    assert all(zones[k]["area_m2"] > old[k]["area_m2"] for k in zones)


def independent_distance_m(lon: float, lat: float, other: shapely.Geometry) -> float:
    """Distance in EPSG:4544 (CGCS2000 GK CM 105E), computed with pyproj + shapely only."""
    p = shapely.Point(TO_4544(lon, lat))
    return float(transform(TO_4544, other).distance(p))


def test_distances_agree_with_independent_epsg4544_within_1_percent(conn):
    d = districts()
    rng = np.random.default_rng(7)
    checked = 0
    for x, y in border_points(conn, 10):
        for _ in range(3):
            lon = x + rng.uniform(-0.03, 0.03)
            lat = y + rng.uniform(-0.03, 0.03)
            f = locate.facts(conn, lon=lon, lat=lat, radius_m=2000)
            inside = [s for s in f.sides if s.contains]
            if len(inside) != 1:
                continue
            other = next(s for s in f.sides if s.code != inside[0].code)
            expected = independent_distance_m(lon, lat, d[other.code])
            if expected < 20:  # too close for a relative comparison to mean anything
                continue
            assert other.distance_m == pytest.approx(expected, rel=0.01)
            checked += 1
    assert checked >= 20


def test_locate_answers_side_chain_grid_police_and_teams(client):
    r = client.get("/api/v1/locate", params={"lon": 105.567, "lat": 30.193})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["side"] == ANJU
    assert [a["level"] for a in body["chain"]] == ["district", "town", "village"]
    assert body["grid"]["code"].startswith(body["chain"][2]["code"])
    assert body["police_grid"]["side"] == ANJU
    assert 0 < body["distance_to_border_m"] < 2000
    assert body["in_border_zone"] is True
    assert body["location"]["type"] == "Point"


def test_locate_is_one_sql_round_trip(conn):
    calls = []

    class Counting:
        def execute(self, *a, **k):
            calls.append(a[0])
            return conn.execute(*a, **k)

    locate.facts(Counting(), lon=105.567, lat=30.193, radius_m=2000)  # type: ignore[arg-type]
    assert len(calls) == 1


def test_a_gcj02_point_is_converted_before_placing(client, conn):
    # A point 250 m inside Tongnan: its GCJ-02 numbers, read as WGS84, land ~450 m away,
    # possibly across the line; declared as gcj02 it must come back to Tongnan.
    x, y = border_points(conn, 5)[2]
    for dx in (0.003, -0.003):
        wgs = (x + dx, y)
        truth = client.get("/api/v1/locate", params={"lon": wgs[0], "lat": wgs[1]}).json()
        g = from_wgs84(wgs[0], wgs[1], "gcj02")
        got = client.get("/api/v1/locate", params={"lon": g[0], "lat": g[1], "crs": "gcj02"}).json()
        assert got["side"] == truth["side"]
        assert got["location"]["coordinates"] == pytest.approx(list(wgs), abs=1e-6)
        assert got["distance_to_border_m"] == pytest.approx(truth["distance_to_border_m"], abs=0.5)


def test_far_from_the_other_side_is_not_in_the_zone(client):
    # Western Anju, ~40 km from Tongnan.
    body = client.get("/api/v1/locate", params={"lon": 105.25, "lat": 30.35}).json()
    assert body["side"] == ANJU
    assert body["distance_to_border_m"] > 10_000
    assert body["in_border_zone"] is False


@pytest.mark.parametrize(
    ("params", "code", "needle"),
    [
        ({"lon": 30.2, "lat": 105.5}, "invalid_coordinates", "swapped"),
        ({"lon": "nan", "lat": 30.2}, "invalid_coordinates", "finite"),
        ({"lon": 200, "lat": 30.2}, "invalid_coordinates", "range"),
        ({"lon": "abc", "lat": 30.2}, "invalid_coordinates", "numbers"),
        ({"lon": 116.4, "lat": 39.9}, "outside_service_area", "outside"),
        ({"lon": 105.5, "lat": 30.2, "crs": "utm"}, "unknown_crs", "unknown"),
    ],
)
def test_locate_rejections_are_422_with_a_clear_body(client, params, code, needle):
    r = client.get("/api/v1/locate", params=params)
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == code
    assert needle in body["message"]
    assert body["detail"]


def test_outside_service_area_reports_the_distance(client):
    body = client.get("/api/v1/locate", params={"lon": 105.0, "lat": 30.3}).json()
    assert body["code"] == "outside_service_area"
    assert body["detail"]["distance_m"] > 1000
    assert body["detail"]["nearest_side"] == ANJU


def test_missing_parameter_is_422_naming_it(client):
    body = client.get("/api/v1/locate", params={"lon": 105.5}).json()
    assert body["code"] == "invalid_request"
    assert body["detail"][0]["field"] == "query.lat"


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["postgis"].startswith("3.")


def test_healthz_is_503_when_the_database_is_unreachable():
    from fastapi.testclient import TestClient

    from api.app import create_app, make_pool
    from api.settings import DatabaseSettings

    pool = make_pool(
        DatabaseSettings(DATABASE_URL="postgresql://x:y@127.0.0.1:9/none", connect_timeout_s=1)  # type: ignore[call-arg]
    )
    try:
        with TestClient(create_app(pool=pool)) as c:
            r = c.get("/healthz")
        assert r.status_code == 503
        assert r.json()["database"] == "unreachable"
        assert "Retry-After" in r.headers
    finally:
        pool.close()


def test_every_table_carries_its_side(conn):
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE column_name = 'side'"
        " AND table_schema = 'public'"
    ).fetchall()
    assert {"areas", "grids", "police_grids", "teams", "chiefs"} <= {r["table_name"] for r in rows}


def test_geometries_are_valid_4326_and_indexed(conn):
    rows = conn.execute(
        "SELECT f_table_name AS t, f_geometry_column AS c, srid, c.relkind AS kind"
        " FROM geometry_columns g JOIN pg_class c ON c.relname = g.f_table_name"
        " AND c.relnamespace = g.f_table_schema::regnamespace"
    ).fetchall()
    wrong = [(r["t"], r["c"], r["srid"]) for r in rows if r["srid"] != 4326]
    assert rows and not wrong, f"geometry columns (views too) not typed as SRID 4326: {wrong}"
    for r in rows:
        if r["kind"] == "v":
            continue  # a view (a feed's shape) is read through its tables' indexes
        if r["t"] == "layer_changes":
            continue  # a change log, read by id and consumed by the re-route, never by place
        if (r["t"], r["c"]) == ("patrol_sessions", "last_geom"):
            continue  # a session's last fix, read by the session's id to extend its track
        idx = conn.execute(
            "SELECT count(*) AS n FROM pg_indexes WHERE tablename = %s AND indexdef ILIKE %s",
            (r["t"], f"%gist%({r['c']})%"),
        ).fetchone()
        assert idx["n"] >= 1, f"{r['t']}.{r['c']} has no GiST index"


def test_every_index_of_incidents_is_traced_to_its_query(conn):
    """Each report pays an insert into every index of ``incidents``: each one kept names the
    query it serves in docs/performance.md, and the ones dropped there are gone."""
    import re

    doc = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    part = doc.split("#### Which query each index of `incidents` serves", 1)[1].split("\n#", 1)[0]
    rows = dict(re.findall(r"^\| `(incidents_[a-z_]+)` \| (.+?) \|$", part, flags=re.M))
    dropped = {name for name, why in rows.items() if why.startswith("**dropped")}
    have = {
        r["indexname"]
        for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'incidents'"
        ).fetchall()
    }
    assert dropped, "the table names the indexes dropped (migration 0027)"
    assert not have & dropped, f"dropped in the analysis but still there: {have & dropped}"
    assert have == set(rows) - dropped, (
        f"indexes with no query named: {have - set(rows)}; named but missing: "
        f"{set(rows) - dropped - have}"
    )


def test_pending_migrations_are_noticed(conn):
    from layers.db import pending_migrations

    assert pending_migrations(conn) == []
    conn.execute("DELETE FROM schema_migrations WHERE version = '0007'")
    assert pending_migrations(conn) == ["0007_indexes.sql"]


def test_healthz_is_503_while_migrations_are_pending(db_url, live_client):
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as c:
        row = c.execute(
            "DELETE FROM schema_migrations WHERE version = '0007' RETURNING *"
        ).fetchone()
        try:
            r = live_client.get("/healthz")
        finally:
            c.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)", row)
    assert r.status_code == 503
    assert r.json()["database"] == "migrations pending" and "0007" in r.json()["detail"]
    assert live_client.get("/healthz").status_code == 200


def test_healthz_on_a_database_never_migrated_is_503_not_500():
    # No PostGIS, no schema_migrations: the page an administrator opens first on a new database.
    from fastapi.testclient import TestClient

    from api.app import create_app, make_pool
    from api.settings import DatabaseSettings
    from tests.conftest import _server_url, _with_db

    server = _server_url()
    name = f"jointgrid_empty_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_with_db(server, "postgres"), autocommit=True) as admin:
        admin.execute(q.SQL("CREATE DATABASE {}").format(q.Identifier(name)))
        try:
            pool = make_pool(DatabaseSettings(DATABASE_URL=_with_db(server, name)))  # type: ignore[call-arg]
            try:
                with TestClient(create_app(pool=pool)) as c:
                    r = c.get("/healthz")
            finally:
                pool.close()
        finally:
            admin.execute(
                q.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(q.Identifier(name))
            )
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["database"] == "migrations pending" and body["postgis"] is None
    assert "jointgrid migrate" in body["detail"]


def test_server_pool_connections_run_without_jit(db_url):
    """A plan whose cost passes jit_above_cost on province-size tables compiled for seconds per
    call; the server's pooled connections have JIT off, whatever the database's default."""
    from layers.pools import server_pool

    pool = server_pool(
        lambda: db_url, min_size=1, max_size=1, connect_timeout_s=5, statement_timeout_ms=5000
    )
    try:
        with pool.connection() as c:
            assert c.execute("SHOW jit").fetchone()["jit"] == "off"
            assert c.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "5s"
    finally:
        pool.close()
