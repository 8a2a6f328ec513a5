"""Reporting and routing: ``/api/v1/incidents``, ``/api/v1/route``, and the case workflow."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from api import limits, params
from api.access import (
    CASE_ROLES,
    Principal,
    allow,
    check_transition,
    find_visible,
    hide_unseen_event_refs,
    hide_unseen_refs,
    may_see_reporter,
)
from api.access import case_scope as access_scope
from api.deps import CatalogueDep, Conn, database
from api.errors import PayloadTooLarge
from api.usecases import cases
from api.usecases.schemas import ReportIn, TransitionIn
from gis import workflow
from gis.errors import NotFound, UnsupportedMediaType
from layers import incidents

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


REPORT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ReportIn"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "report": {"type": "string", "description": "the JSON body, as one part"},
                    "media": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "photos: JPEG, PNG, WebP or HEIC (see the catalogue's "
                        "media limits)",
                    },
                },
                "required": ["report"],
            }
        },
    },
}


@router.post(
    "/incidents",
    status_code=201,
    summary="Report an incident: it is located, routed and stored as a case",
    description="A JSON body, or multipart/form-data with the JSON as the part `report` and "
    "photos as parts named `media`.",
    responses={200: {"description": "a retry: the case made by the first request"}},
    openapi_extra={"requestBody": REPORT_BODY},
)
async def post_incident(
    request: Request,
    who: Annotated[Principal, allow(*CASE_ROLES)],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    from api.routes import media as media_routes

    if media_routes.is_multipart(request):
        return await media_routes.post_report_with_media(request, who, idempotency_key)
    body = await report_body(request)
    # The hot path: no sync dependency, the database and the catalogue taken straight from
    # the app (each dependency costs FastAPI's solving), and the whole report (connection,
    # facts, decision, insert, connection back) in one thread hop (api.deps.database).
    catalogue = request.app.state.catalogue

    def work(conn: Any) -> tuple[dict[str, Any], bool]:
        case, created = cases.report(
            conn, body, catalogue, idempotency_key=idempotency_key, actor=who.actor()
        )
        if case["possible_duplicate_of"] is not None:  # a case of another side stays unnamed
            hide_unseen_refs(conn, who, [case])
        return case, created

    case, created = await database(request).run(work)
    return case_response(case, created)


def case_response(case: dict[str, Any], created: bool) -> Response:
    # orjson: the case with its routing trace is the largest answer on the hot path
    return Response(
        orjson.dumps(case),
        media_type="application/json",
        status_code=201 if created else 200,
        headers={"Location": case["links"]["self"]},
    )


async def report_body(request: Request, raw: bytes | None = None) -> ReportIn:
    """The report JSON, validated as FastAPI would (the route reads its body itself, since it
    takes multipart too); errors come out as the same 422 ``invalid_request``."""
    if raw is None:
        ctype = request.headers.get("content-type", "")
        if not limits.is_json(ctype):
            raise UnsupportedMediaType(
                "send the report as application/json, or as multipart/form-data with photos",
                {
                    "content_type": ctype[:100] or "none",
                    "accepted": ["application/json", "multipart/form-data"],
                },
            )
        # The route's body limit admits photos (api.app.media_body_rule); JSON alone keeps
        # the default limit.
        limit = request.app.state.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(
                f"the request body is larger than {limit:,} bytes", {"max_bytes": limit}
            )
        raw = await request.body()
        if len(raw) > limit:
            raise PayloadTooLarge(
                f"the request body is larger than {limit:,} bytes", {"max_bytes": limit}
            )
    # Strict JSON, as on every other JSON route (api.limits.JsonBodies): no NaN, Infinity,
    # lone surrogate or deep nesting reaches the model.
    limits.strict_json(raw, what="the report")
    try:
        return ReportIn.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


@router.post("/route", summary="The routing decision for a report, without storing anything")
def post_route(
    body: ReportIn,
    conn: Conn,
    catalogue: CatalogueDep,
    who: Annotated[Principal, allow(*CASE_ROLES)],
) -> dict[str, Any]:
    return cases.route(conn, body, catalogue)


@router.get("/incidents/{case_id}", summary="A case, by id or code")
def get_incident(
    case_id: str, conn: Conn, who: Annotated[Principal, allow(*CASE_ROLES)]
) -> dict[str, Any]:
    row = _visible(conn, who, case_id)
    view = cases.case_view(row, show_reporter=may_see_reporter(who, row))
    hide_unseen_refs(conn, who, [view])
    return view


def _visible(conn: Conn, who: Principal, case_id: str) -> dict[str, Any]:
    """The case, or 404 when it does not exist or the caller may not see it (the same answer)."""
    row = find_visible(conn, who, case_id)
    if row is None:
        raise NotFound("no such case, or not visible to this key", {"id": case_id})
    return row


@router.get("/incidents/{case_id}/events", summary="The audit trail of a case, oldest first")
def get_incident_events(
    case_id: str, conn: Conn, who: Annotated[Principal, allow(*CASE_ROLES)]
) -> dict[str, Any]:
    row = _visible(conn, who, case_id)
    events = incidents.events(conn, row["id"])
    hide_unseen_event_refs(conn, who, events)
    return {"id": row["id"], "code": row["code"], "events": events}


STATUSES = set(workflow.STATUSES)


@router.get("/incidents", summary="Cases, newest first, filtered and paged")
def list_incidents(
    conn: Conn,
    catalogue: CatalogueDep,
    who: Annotated[Principal, allow(*CASE_ROLES)],
    status: str | None = None,
    mechanism: str | None = None,
    side: str | None = None,
    category: str | None = None,
    severity: str | None = None,
    cross_boundary: bool | None = None,
    bbox: Annotated[str | None, Query(description="west,south,east,north (WGS84)")] = None,
    since: Annotated[str | None, Query(description="reported at or after (ISO 8601)")] = None,
    until: Annotated[str | None, Query(description="reported before (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    fields: Annotated[
        str | None,
        Query(description="only these top-level fields of each case, e.g. code,status"),
    ] = None,
) -> dict[str, Any]:
    wanted = params.parse_csv(fields, name="fields", valid=set(cases.CASE_FIELDS))
    filters = {
        "status": params.parse_csv(status, name="status", valid=STATUSES),
        "mechanism": params.parse_csv(mechanism, name="mechanism", valid=set(catalogue.mechanisms)),
        "side": params.parse_csv(side, name="side"),
        "category": params.parse_csv(category, name="category", valid=set(catalogue.categories)),
        "severity": params.parse_csv(severity, name="severity", valid=set(catalogue.severities)),
        "since": params.parse_time(since, name="since"),
        "until": params.parse_time(until, name="until"),
        "cross_boundary": cross_boundary,
    }
    after = params.decode_cursor(cursor, size=2)
    rows = incidents.list_cases(
        conn,
        filters=filters,
        scope=access_scope(who),  # narrows the filters above; never replaces one
        bbox=params.parse_bbox(bbox),
        limit=limit + 1,
        after=after,  # type: ignore[arg-type]
    )
    page, more = rows[:limit], len(rows) > limit
    items = [cases.case_view(r, show_reporter=may_see_reporter(who, r)) for r in page]
    hide_unseen_refs(conn, who, items)
    if wanted:
        items = [{k: v for k, v in item.items() if k in wanted} for item in items]
    out: dict[str, Any] = {"items": items, "count": len(page)}
    if more:
        last = page[-1]
        out["next_cursor"] = params.encode_cursor(last["reported_at"].isoformat(), last["id"])
    return out


@router.post(
    "/incidents/{case_id}/transitions",
    summary="Move a case through the workflow (accept, dispatch, start, resolve, verify, close, …)",
    responses={
        409: {"description": "the workflow does not allow this action now; lists the allowed"}
    },
)
def post_transition(
    case_id: str,
    body: TransitionIn,
    conn: Conn,
    catalogue: CatalogueDep,
    who: Annotated[Principal, allow("team_member", "operator", "admin")],
) -> dict[str, Any]:
    row = _visible(conn, who, case_id)
    check_transition(who, row, body.side)
    case = cases.transition(
        conn,
        row["id"],
        body,
        catalogue,
        actor=who.actor(),
        find_case=lambda c, ref: find_visible(c, who, ref),
    )
    hide_unseen_refs(conn, who, [case])
    return {**case, "reporter": case["reporter"] if may_see_reporter(who, row) else None}
