"""Reporting and routing: ``/api/v1/incidents``, ``/api/v1/route``, and the case workflow."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from api import cases
from api.deps import CatalogueDep, Conn
from api.schemas import ReportIn

router = APIRouter(prefix="/api/v1", tags=["cases"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="A unique key per report (e.g. a UUID made when the report is made). "
        "Retries with the same key and body return the same case.",
    ),
]


@router.post(
    "/incidents",
    status_code=201,
    summary="Report an incident: it is located, routed and stored as a case",
    responses={200: {"description": "a retry: the case made by the first request"}},
)
def post_incident(
    body: ReportIn, conn: Conn, catalogue: CatalogueDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    case, created = cases.report(
        conn, body, catalogue, idempotency_key=idempotency_key, actor={"kind": "anonymous"}
    )
    return JSONResponse(
        case,
        status_code=201 if created else 200,
        headers={"Location": case["links"]["self"]},
    )


@router.post("/route", summary="The routing decision for a report, without storing anything")
def post_route(body: ReportIn, conn: Conn, catalogue: CatalogueDep) -> dict[str, Any]:
    return cases.route(conn, body, catalogue)
