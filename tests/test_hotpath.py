"""The hot routes (report, locate): one thread hop per request, the pool's idle-only check.

Each test runs the app on a real pool of its own, so requests commit; they report with keys
and points of their own and check only what they made.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import bearer
from tests.geo import ANJU, TONGNAN, point_inside

pytestmark = pytest.mark.postgis


def _app(db_url: str, *, pool_max: int, connect_timeout_s: float = 10.0) -> Any:
    from api.app import create_app, make_pool
    from api.settings import DatabaseSettings

    pool = make_pool(
        DatabaseSettings(  # type: ignore[call-arg]
            DATABASE_URL=db_url,
            pool_min=1,
            pool_max=pool_max,
            connect_timeout_s=connect_timeout_s,
        )
    )
    app = create_app(pool=pool)
    app.state.database.write.wait_s = connect_timeout_s
    return app, pool


@pytest.fixture()
def small_pool_app(db_url: str) -> Iterator[Any]:
    app, pool = _app(db_url, pool_max=2)
    pool.wait(timeout=10)
    try:
        yield app
    finally:
        pool.close()


def _report(lon: float, lat: float, n: int) -> dict[str, Any]:
    return {
        "lon": round(lon + (n % 7) * 1e-4, 7),
        "lat": round(lat + (n % 5) * 1e-4, 7),
        "category": "land_dispute",
        "description": f"hot path {n}",
    }


def test_more_requests_than_threads_and_connections_all_answer(small_pool_app, api_keys):
    """Reports, locates and sync routes at once, far more than the pool (2) and the sync
    workers (40) hold: none may wait on another's thread until a false 503."""
    worker = bearer(api_keys[f"grid_worker:{ANJU}"])
    admin = bearer(api_keys["admin"])
    here = point_inside(ANJU, 900, 0.4)
    there = point_inside(TONGNAN, 300, 0.6)

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=small_pool_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
            calls = []
            for i in range(120):
                lon, lat = here if i % 2 else there
                if i % 3 == 0:
                    calls.append(
                        c.get("/api/v1/locate", params={"lon": lon, "lat": lat}, headers=worker)
                    )
                elif i % 3 == 1:
                    calls.append(
                        c.post(
                            "/api/v1/incidents",
                            json=_report(lon, lat, i),
                            headers={**worker, "Idempotency-Key": uuid.uuid4().hex},
                        )
                    )
                else:  # a sync route holding its connection through api.deps.get_conn
                    calls.append(c.get("/api/v1/incidents", params={"limit": 1}, headers=admin))
            t0 = time.monotonic()
            answers = await asyncio.gather(*calls)
            assert time.monotonic() - t0 < 60
            return [r.status_code for r in answers]

    statuses = asyncio.run(scenario())
    assert Counter(statuses) == Counter({200: 80, 201: 40}), Counter(statuses)


def test_concurrent_retries_make_one_case(small_pool_app, api_keys, db_url):
    worker = bearer(api_keys[f"grid_worker:{TONGNAN}"])
    lon, lat = point_inside(TONGNAN, 1500, 0.3)
    key = f"hot-{uuid.uuid4().hex}"
    body = _report(lon, lat, 1)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=small_pool_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
            return await asyncio.gather(
                *[
                    c.post(
                        "/api/v1/incidents",
                        json=body,
                        headers={**worker, "Idempotency-Key": key},
                    )
                    for _ in range(12)
                ]
            )

    answers = asyncio.run(scenario())
    assert sorted(r.status_code for r in answers).count(201) == 1
    assert {r.status_code for r in answers} <= {200, 201}
    assert len({r.json()["id"] for r in answers}) == 1
    with psycopg.connect(db_url, row_factory=dict_row) as c:
        rows = c.execute(
            "SELECT i.id, (SELECT count(*) FROM incident_events e WHERE e.incident_id = i.id)"
            " AS events FROM incidents i WHERE i.idempotency_key LIKE %s",
            (f"%:{key}",),
        ).fetchall()
    assert len(rows) == 1 and rows[0]["events"] == 1


def test_errors_on_the_hot_routes_say_what_was_wrong(small_pool_app, api_keys):
    from fastapi.testclient import TestClient

    worker = bearer(api_keys[f"grid_worker:{ANJU}"])
    lon, lat = point_inside(ANJU, 2500, 0.5)
    with TestClient(small_pool_app, raise_server_exceptions=False) as c:
        r = c.post("/api/v1/incidents", json={"lon": lon, "lat": lat}, headers=worker)
        assert r.status_code == 422 and "category" in r.text
        r = c.post("/api/v1/incidents", json={**_report(lon, lat, 0), "lon": 300.0}, headers=worker)
        assert r.status_code == 422 and r.json()["code"], r.text
        key = uuid.uuid4().hex
        r1 = c.post(
            "/api/v1/incidents",
            json=_report(lon, lat, 0),
            headers={**worker, "Idempotency-Key": key},
        )
        r2 = c.post(
            "/api/v1/incidents",
            json=_report(lon, lat, 3),
            headers={**worker, "Idempotency-Key": key},
        )
        assert r1.status_code == 201 and r2.status_code == 409, r2.text
        assert "Idempotency-Key" in r2.json()["message"]
        r = c.get("/api/v1/locate", params={"lon": "x", "lat": lat}, headers=worker)
        assert 400 <= r.status_code < 500 and r.json()["message"], r.text
        r = c.post("/api/v1/incidents", json=_report(lon, lat, 0))
        assert r.status_code == 401
        r = c.get("/api/v1/locate", params={"lon": lon, "lat": lat}, headers=bearer("nope"))
        assert r.status_code == 401


def test_a_recently_used_connection_is_not_checked_an_idle_one_is(db_url):
    from layers import pools as app_module

    checks: list[int] = []
    real = app_module.ConnectionPool.check_connection

    def counting(conn: Any) -> None:
        checks.append(1)
        real(conn)

    app_module.ConnectionPool.check_connection = counting
    try:
        _, pool = _app(db_url, pool_max=1)
        try:
            pool.wait(timeout=10)
            with pool.connection() as c:  # fresh: never given back yet, so checked
                c.execute("SELECT 1")
            assert len(checks) == 1
            for _ in range(5):  # just given back: not checked
                with pool.connection() as c:
                    c.execute("SELECT 1")
            assert len(checks) == 1
            conn = pool.getconn()
            conn._jg_idle_since = time.monotonic() - app_module.CHECK_AFTER_IDLE_S - 1  # type: ignore[attr-defined]
            pool._pool.append(conn)  # as if given back long ago (bypassing the time stamp)
            conn._pool = None  # type: ignore[attr-defined]
            with pool.connection() as c:
                c.execute("SELECT 1")
            assert len(checks) == 2
        finally:
            pool.close()
    finally:
        app_module.ConnectionPool.check_connection = real


def test_a_broken_connection_is_a_503_then_replaced(db_url, api_keys):
    """A connection that died while pooled (database restart) fails its next statement with a
    503, and the next request gets a working connection."""
    from fastapi.testclient import TestClient

    app, pool = _app(db_url, pool_max=1)
    worker = bearer(api_keys[f"grid_worker:{ANJU}"])
    lon, lat = point_inside(ANJU, 900, 0.55)
    try:
        pool.wait(timeout=10)
        with TestClient(app, raise_server_exceptions=False) as c:
            assert c.get(
                "/api/v1/locate", params={"lon": lon, "lat": lat}, headers=worker
            ).is_success
            with pool.connection() as conn:
                pid = conn.info.backend_pid
            with psycopg.connect(db_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            time.sleep(0.2)
            answers = [
                c.get("/api/v1/locate", params={"lon": lon, "lat": lat}, headers=worker)
                for _ in range(3)
            ]
        codes = [r.status_code for r in answers]
        assert codes[-1] == 200, codes
        assert set(codes) <= {200, 503}, codes
        for r in answers:
            if r.status_code == 503:
                assert r.json()["code"] == "database_unavailable" and r.headers.get("Retry-After")
    finally:
        pool.close()


def test_the_views_copy_records_as_asdict_does(conn, catalogue):
    """The case and locate views copy teams, contacts, areas, grids and police grids field by
    field (``api.usecases.views.flat``): the same dicts as ``dataclasses.asdict``."""
    from dataclasses import asdict
    from datetime import UTC, datetime

    from api.usecases import cases
    from api.usecases.schemas import ReportIn
    from api.usecases.views import flat
    from layers import locate

    now = datetime.now(UTC)
    lon, lat = point_inside(ANJU, 150, 0.5)  # in the border zone: teams and several contacts
    body = ReportIn(lon=lon, lat=lat, category="land_dispute", parties_sides=[TONGNAN])
    rep, _ = cases.normalise(body, catalogue, now=now)
    d = cases._decide(conn, rep, catalogue, now=now)
    assert d.cross_boundary and d.teams and d.contacts and d.chain
    f = locate.facts(conn, lon=lon, lat=lat, radius_m=catalogue.border_zone_m)
    grids = (*f.grids_here, *f.nearest_grids)
    police = (*f.police_here, *f.nearest_police)
    assert grids and police and f.chain
    for record in (*d.teams, *d.contacts, *d.chain, *grids, *police, *f.chain):
        assert flat(record) == asdict(record)
        assert list(flat(record)) == list(asdict(record))


def test_teams_are_left_out_only_where_no_decision_reads_them(conn, catalogue):
    from layers import locate

    zone = catalogue.border_zone_m
    mech = catalogue.mechanism_for("land_dispute")
    inland = point_inside(ANJU, zone + 1500, 0.5)
    border = point_inside(TONGNAN, zone / 4, 0.5)

    def facts(lonlat: tuple[float, float], **kw: Any) -> Any:
        lon, lat = lonlat
        return locate.facts(conn, lon=lon, lat=lat, radius_m=zone, mechanism=mech, **kw)

    assert facts(inland).teams, "locate and re-route still get the teams"
    assert not facts(inland, teams_if_cross=True).teams
    assert facts(inland, teams_if_cross=True, sides=[TONGNAN]).teams  # parties
    assert facts(border, teams_if_cross=True).teams == facts(border).teams
