"""The stack's ceiling for report ingestion: the same uvicorn + FastAPI + psycopg pool, with an
endpoint that validates a small JSON body and INSERTs one row, nothing else.

Run as ``uvicorn bench._ceiling_app:create_app --factory`` with DATABASE_URL set.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from pydantic import BaseModel


class Body(BaseModel):
    lon: float
    lat: float
    category: str
    severity: str | None = None


def create_app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: ConnectionPool[Any] = ConnectionPool(
            os.environ["DATABASE_URL"], min_size=4, max_size=20, kwargs={"autocommit": True}
        )
        pool.wait()
        with pool.connection() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS bench_ceiling (id bigserial PRIMARY KEY,"
                " body jsonb NOT NULL, at timestamptz NOT NULL DEFAULT now())"
            )
        app.state.pool = pool
        yield
        pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/v1/incidents", status_code=201)
    def post(body: Body, request: Request) -> JSONResponse:
        with request.app.state.pool.connection() as c:
            row = c.execute(
                "INSERT INTO bench_ceiling (body) VALUES (%s) RETURNING id",
                (Jsonb(body.model_dump()),),
            ).fetchone()
        return JSONResponse({"id": row[0] if row else None}, status_code=201)

    return app
