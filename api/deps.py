"""FastAPI dependencies: the database connection and the catalogue."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
import psycopg
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool, PoolTimeout

from gis.catalogue import Catalogue
from gis.errors import Unavailable
from layers.db import translate_errors

T = TypeVar("T")

# Threads that may sit waiting for a free pooled connection at once (more callers queue
# without a thread), and threads that give connections back. Giving back has threads of its
# own: it must never queue behind callers who wait for the very connection being returned.
POOL_WAITERS = 64
POOL_RETURNERS = 8
# Threads that run a whole unit of work (`Db.run`): take a connection, work, give it back.
POOL_WORKERS = 64


def work_executor(app: Any) -> ThreadPoolExecutor:
    """The threads of `Db.run`, one set per app (shut down with it, see api.app)."""
    executor = getattr(app.state, "db_executor", None)
    if executor is None:
        executor = app.state.db_executor = ThreadPoolExecutor(
            POOL_WORKERS, thread_name_prefix="jointgrid-db"
        )
    return executor


def get_pool(request: Request) -> ConnectionPool[Any]:
    return request.app.state.pool


def app_limiter(request: Request, name: str, size: int) -> anyio.CapacityLimiter:
    """The app's capacity limiter ``name`` (``size`` threads), made on first use."""
    limiter = getattr(request.app.state, name, None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(size)
        setattr(request.app.state, name, limiter)
    return limiter


def _unavailable(exc: PoolTimeout) -> Unavailable:
    # our words only, not the pool's
    return Unavailable("the database is not reachable; retry shortly", {"retry_after_s": 5})


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
            limiter=app_limiter(request, "pool_waiters", POOL_WAITERS),
        )
    except PoolTimeout as exc:
        raise _unavailable(exc) from exc
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
                pool.putconn, conn, limiter=app_limiter(request, "pool_returners", POOL_RETURNERS)
            )


class Db:
    """Runs one unit of work on a pooled connection in a single thread hop.

    ``await db.run(fn, *args)`` takes a connection, calls ``fn(conn, *args)`` with database
    errors translated, and gives the connection back, all on one thread: the hot routes pay
    one hand-off to the thread pool instead of one each for taking the connection, the
    handler and giving it back. The threads are a set of their own, never the 40 that run
    the sync handlers, and a thread gives back the connection it took before it
    takes anything else, so waiting for a connection can never block the holders of one
    (see ``get_conn``). An override of ``get_conn`` (the tests' shared transaction) is used
    in place of the pool.
    """

    __slots__ = ("_executor", "_override", "_pool", "_timeout")

    def __init__(self, request: Request) -> None:
        app = request.app
        self._pool: ConnectionPool[Any] = app.state.pool
        self._timeout: float = app.state.pool_timeout
        self._executor = work_executor(app)
        self._override: Callable[..., Iterator[psycopg.Connection[Any]]] | None = (
            app.dependency_overrides.get(get_conn)
        )

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # A plain executor hand-off: anyio's run_sync cost about a tenth of a report's server
        # time in its limiter and cancel-scope bookkeeping. A client that hangs up does not
        # stop the work: the thread finishes it and gives the connection back.
        work = functools.partial(self._work, fn, args, kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def _work(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        if self._override is not None:
            with contextlib.contextmanager(self._override)() as conn, translate_errors():
                return fn(conn, *args, **kwargs)
        try:
            conn = self._pool.getconn(timeout=self._timeout)
        except PoolTimeout as exc:
            raise _unavailable(exc) from exc
        try:
            with translate_errors():
                return fn(conn, *args, **kwargs)
        finally:
            self._pool.putconn(conn)


async def get_catalogue(request: Request) -> Catalogue:
    return request.app.state.catalogue


Conn = Annotated[psycopg.Connection[Any], Depends(get_conn)]
CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
