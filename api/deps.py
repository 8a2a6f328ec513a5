"""FastAPI dependencies: the database connection and the catalogue.

Every connection the server uses comes from ``layers.db.Database`` (``request.app.state
.database``), in one of three ways, all of which wait for a connection on the event loop and
never on a thread (see ``layers.db``):

- ``Conn`` / ``ReadConn``: a dependency holding a connection for a sync handler's unit of work;
- ``database(request).run(fn, ...)`` (or ``.read.run``): one unit of work in one thread hop,
  for the hot async routes;
- ``await database(request).read.acquire()``: a lease that a streaming response keeps until
  its last byte (``api.routes.ogc``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
from fastapi import Depends, Request

from gis.catalogue import Catalogue
from layers.db import Conn as DbConn
from layers.db import Database, Source


def database(request: Request) -> Database:
    """The app's database (its write and read sources)."""
    return request.app.state.database


def Db(request: Request) -> Database:
    """The older name of ``database``."""
    return database(request)


@asynccontextmanager
async def _holding(request: Request, source: Source) -> AsyncIterator[DbConn]:
    """A connection leased from ``source``, named on the request for its unit of work: the key
    check reuses it instead of taking a second one (api.access)."""
    async with source.lease() as lease:
        request.state.conn = lease.conn
        try:
            yield lease.conn
        finally:
            request.state.conn = None


async def get_conn(request: Request) -> AsyncIterator[DbConn]:
    """A connection on the write pool for the handler's unit of work.

    Connections are autocommit: a handler that changes data does so in ``conn.transaction()``,
    which commits when the block ends, before the answer is sent.
    """
    async with _holding(request, database(request).write) as conn:
        yield conn


async def get_read_conn(request: Request) -> AsyncIterator[DbConn]:
    """A connection on the read pool (a standby once there is one), for read-only handlers."""
    async with _holding(request, database(request).read) as conn:
        yield conn


async def get_catalogue(request: Request) -> Catalogue:
    return request.app.state.catalogue


Conn = Annotated[DbConn, Depends(get_conn)]
ReadConn = Annotated[DbConn, Depends(get_read_conn)]
CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
DatabaseDep = Annotated[Database, Depends(database)]


def app_limiter(request: Request, name: str, size: int) -> anyio.CapacityLimiter:
    """The app's capacity limiter ``name`` (``size`` threads), made on first use: for work
    that is not a database connection's (decoding photos, say)."""
    limiter = getattr(request.app.state, name, None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(size)
        setattr(request.app.state, name, limiter)
    return limiter
