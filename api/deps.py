"""FastAPI dependencies: the database connection and the catalogue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool, PoolTimeout

from gis.catalogue import Catalogue
from gis.errors import Unavailable
from layers.db import translate_errors


def get_pool(request: Request) -> ConnectionPool[Any]:
    return request.app.state.pool


def get_conn(request: Request) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection; the transaction commits when the handler returns normally."""
    pool = get_pool(request)
    try:
        with translate_errors(), pool.connection(timeout=request.app.state.pool_timeout) as conn:
            yield conn
    except PoolTimeout as exc:
        raise Unavailable("the database is not reachable; retry shortly") from exc


def get_catalogue(request: Request) -> Catalogue:
    return request.app.state.catalogue


Conn = Annotated[psycopg.Connection[Any], Depends(get_conn)]
CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
