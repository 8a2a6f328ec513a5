"""FastAPI dependencies: the database connection and the catalogue."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import anyio.to_thread
import psycopg
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool, PoolTimeout

from gis.catalogue import Catalogue
from gis.errors import Unavailable
from layers.db import translate_errors

# Threads that may sit waiting for a free pooled connection at once (more callers queue
# without a thread), and threads that give connections back. Giving back has threads of its
# own: it must never queue behind callers who wait for the very connection being returned.
POOL_WAITERS = 64
POOL_RETURNERS = 8


def get_pool(request: Request) -> ConnectionPool[Any]:
    return request.app.state.pool


def _limiter(request: Request, name: str, size: int) -> anyio.CapacityLimiter:
    limiter = getattr(request.app.state, name, None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(size)
        setattr(request.app.state, name, limiter)
    return limiter


async def get_conn(request: Request) -> AsyncIterator[psycopg.Connection[Any]]:
    """A pooled connection; the transaction commits when the handler returns normally.

    Waiting for a free connection happens on threads of its own, never on the worker threads
    (40) that run the sync handlers and dependencies. Otherwise, with more concurrent requests
    than workers, every worker can end up blocked waiting for a connection that is held by a
    request which itself waits for a worker: all of them then time out with a false 503.
    """
    pool = get_pool(request)
    try:
        conn = await anyio.to_thread.run_sync(
            functools.partial(pool.getconn, timeout=request.app.state.pool_timeout),
            limiter=_limiter(request, "pool_waiters", POOL_WAITERS),
        )
    except PoolTimeout as exc:
        raise Unavailable(
            "the database is not reachable; retry shortly", {"reason": str(exc)}
        ) from exc
    # The key check reuses this connection instead of holding a second one (see api.access).
    request.state.conn = conn
    try:
        with translate_errors():
            yield conn
    finally:
        request.state.conn = None
        # Shielded: a client that hangs up must not leak the connection.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                pool.putconn, conn, limiter=_limiter(request, "pool_returners", POOL_RETURNERS)
            )


def get_catalogue(request: Request) -> Catalogue:
    return request.app.state.catalogue


Conn = Annotated[psycopg.Connection[Any], Depends(get_conn)]
CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
