"""``GET /healthz``: 200 once the database answers, 503 before."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from api.access import allow
from gis.errors import Unavailable
from layers.db import pending_migrations, postgis_version

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", summary="Liveness and database readiness", dependencies=[allow(anyone=True)]
)
def healthz(request: Request) -> JSONResponse:
    pool = request.app.state.pool
    try:
        with pool.connection(timeout=2.0) as conn:
            version = postgis_version(conn)
            pending = pending_migrations(conn)
    except (PoolTimeout, Unavailable, OSError) as exc:
        body: dict[str, Any] = {
            "status": "unavailable",
            "database": "unreachable",
            "postgis": None,
            # our words only: the driver's text names hosts and ports
            "detail": exc.message
            if isinstance(exc, Unavailable)
            else "the database did not answer in time; retry shortly",
        }
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
    if pending:
        return JSONResponse(
            {
                "status": "unavailable",
                "database": "migrations pending",
                "postgis": version,
                "detail": f"run `jointgrid migrate` to apply {', '.join(pending)}",
            },
            status_code=503,
            headers={"Retry-After": "30"},
        )
    return JSONResponse({"status": "ok", "database": "ok", "postgis": version})
