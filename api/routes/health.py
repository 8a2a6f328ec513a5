"""``GET /healthz``: 200 once the database answers, 503 before.

``pools`` says where each pool's connections go: ``write`` the node it reaches and that node's
role, ``read`` (on a replicated cluster) each host with its role, its replication lag and
whether it serves reads now (``layers.replicas``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.access import allow
from api.deps import database
from layers.db import node_of, pending_migrations, postgis_version
from layers.errors import Overloaded, Unavailable

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", summary="Liveness and database readiness", dependencies=[allow(anyone=True)]
)
async def healthz(request: Request) -> JSONResponse:
    def check(conn: Any) -> tuple[str, list[str], dict[str, Any]]:
        return postgis_version(conn), pending_migrations(conn), node_of(conn)

    db = database(request)
    try:
        version, pending, node = await db.write.run(check)
    except Overloaded as exc:
        # Every connection busy for the whole wait, while the database answers: not down.
        return JSONResponse(
            {
                "status": "overloaded",
                "database": "busy",
                "postgis": None,
                "detail": exc.message,
            },
            status_code=503,
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    except (Unavailable, OSError) as exc:
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
                "postgis": version or None,
                "detail": f"run `jointgrid migrate` to apply {', '.join(pending)}",
            },
            status_code=503,
            headers={"Retry-After": "30"},
        )
    pools: dict[str, Any] = {"write": node}
    if db.replicas is not None:
        pools["read"] = db.replicas.report()
    return JSONResponse({"status": "ok", "database": "ok", "postgis": version, "pools": pools})
