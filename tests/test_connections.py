"""One way to hold a connection (``layers.db.Database``): no false 503 under concurrency, and a
503 that says what is true, overloaded or unreachable.

The concurrency tests run against the live server (a real uvicorn process, pool of 20); the
overload and outage tests run the app in this process on a pool of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import bearer

pytestmark = pytest.mark.postgis


async def _burst(base: str, key: str, path: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=limits, headers=bearer(key)
    ) as c:
        return await asyncio.gather(*[c.get(path) for _ in range(n)])


@pytest.mark.parametrize("collection", ["incidents", "grids"])
def test_80_concurrent_feed_pages_all_answer_200(live_server, api_keys, collection):
    """80 streaming items pages at once: four times the pool, twice the sync worker threads.
    The old sync route waited for its connection on those threads and answered 18-28 of
    them with a false 503 after 5 s."""
    t0 = time.monotonic()
    answers = asyncio.run(
        _burst(live_server, api_keys["feed"], f"/ogc/collections/{collection}/items", 80)
    )
    took = time.monotonic() - t0
    statuses = Counter(r.status_code for r in answers)
    assert statuses == Counter({200: 80}), (statuses, [r.text[:200] for r in answers][:3])
    for r in answers:
        body = r.json()
        assert body["type"] == "FeatureCollection" and body["numberReturned"] == len(
            body["features"]
        )
    assert took < 30, took


def test_streams_left_mid_page_give_their_connections_back(live_server, api_keys):
    """Clients that hang up after the first block, more of them than the pool has
    connections: every lease goes back, so 80 full pages still all answer."""

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=live_server, timeout=30, headers=bearer(api_keys["feed"])
        ) as c:
            for _ in range(30):
                async with c.stream("GET", "/ogc/collections/grids/items?limit=2000") as r:
                    assert r.status_code == 200
                    async for _chunk in r.aiter_raw():
                        break  # leave mid-page: the connection closes with the stream
        return await _burst(live_server, api_keys["feed"], "/ogc/collections/grids/items", 80)

    answers = asyncio.run(scenario())
    assert Counter(r.status_code for r in answers) == Counter({200: 80})


def _app(url: str, *, pool_max: int, wait_s: float) -> tuple[Any, Any]:
    from api.app import create_app, make_pool
    from api.settings import DatabaseSettings

    pool = make_pool(
        DatabaseSettings(  # type: ignore[call-arg]
            DATABASE_URL=url, pool_min=1, pool_max=pool_max, connect_timeout_s=wait_s
        )
    )
    app = create_app(pool=pool)
    app.state.database.write.wait_s = wait_s
    return app, pool


@pytest.fixture()
def busy_app(db_url: str) -> Iterator[Any]:
    app, pool = _app(db_url, pool_max=2, wait_s=1.0)
    pool.wait(timeout=10)
    try:
        yield app
    finally:
        pool.close()


def test_pool_wait_while_the_database_answers_is_503_overloaded(busy_app, db_url, api_keys):
    """Both connections stuck behind a lock (the database answers, slowly): the other
    requests wait their 1 s and get 503 `overloaded` with Retry-After, not `unreachable`;
    the two stuck ones finish with 200 once the lock goes."""
    admin = bearer(api_keys["admin"])

    async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
        transport = httpx.ASGITransport(app=busy_app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", timeout=60, headers=admin
        ) as c:
            assert (await c.get("/api/v1/incidents", params={"limit": 1})).status_code == 200
            with psycopg.connect(db_url) as locker:
                locker.execute("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE")
                stuck = [
                    asyncio.ensure_future(c.get("/api/v1/incidents", params={"limit": 1}))
                    for _ in range(2)
                ]
                await asyncio.sleep(0.5)  # both now hold the two connections, waiting
                others = await asyncio.gather(
                    *[c.get("/api/v1/incidents", params={"limit": 1}) for _ in range(4)],
                    c.get("/healthz"),
                )
                locker.rollback()
            return [*(await asyncio.gather(*stuck)), *others[:4]], others[4]

    answers, health = asyncio.run(scenario())
    assert [r.status_code for r in answers[:2]] == [200, 200]
    for r in answers[2:]:
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["code"] == "overloaded", body
        assert "overloaded" in body["message"] and body["detail"]["connections"] == 2
        assert r.headers["Retry-After"] == "2"
    assert health.status_code == 503 and health.json()["database"] == "busy"
    assert health.headers["Retry-After"] == "2"


def test_connection_failure_is_503_database_unavailable(api_keys):
    """No database behind the address: every answer is 503 `database_unavailable`, also for
    the requests that waited for a permit behind the failing ones (they must not be told
    `overloaded`), and the feed says it in its own error shape."""
    app, pool = _app("postgresql://x:y@127.0.0.1:9/none", pool_max=1, wait_s=1.0)
    try:

        async def scenario() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://test",
                timeout=60,
                headers=bearer(api_keys["admin"]),
            ) as c:
                first = await c.get("/api/v1/incidents")
                rest = await asyncio.gather(
                    *[c.get("/api/v1/incidents") for _ in range(5)],
                    c.get("/ogc/collections/grids/items"),
                )
                return [first, *rest]

        answers = asyncio.run(scenario())
    finally:
        pool.close()
    for r in answers:
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "database_unavailable", r.json()
        assert r.headers["Retry-After"] == "5"
