"""Reporting and routing: ``/api/v1/incidents``, ``/api/v1/route``, and the case workflow."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response

from api import cases, params
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
from api.deps import CatalogueDep, Conn, Db
from api.schemas import ReportIn, TransitionIn
from gis import workflow
from gis.errors import NotFound
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


@router.post(
    "/incidents",
    status_code=201,
    summary="Report an incident: it is located, routed and stored as a case",
    responses={200: {"description": "a retry: the case made by the first request"}},
)
async def post_incident(
    request: Request,
    body: ReportIn,
    who: Annotated[Principal, allow(*CASE_ROLES)],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    # The hot path: no sync dependency, the database and the catalogue taken straight from
    # the app (each dependency costs FastAPI's solving), and the whole report (connection,
    # facts, decision, insert, connection back) in one thread hop (api.deps.Db).
    catalogue = request.app.state.catalogue

    def work(conn: Any) -> tuple[dict[str, Any], bool]:
        case, created = cases.report(
            conn, body, catalogue, idempotency_key=idempotency_key, actor=who.actor(), scope=who
        )
        if case["possible_duplicate_of"] is not None:  # a case of another side stays unnamed
            hide_unseen_refs(conn, who, [case])
        return case, created

    case, created = await Db(request).run(work)
    # orjson: the case with its routing trace is the largest answer on the hot path
    return Response(
        orjson.dumps(case),
        media_type="application/json",
        status_code=201 if created else 200,
        headers={"Location": case["links"]["self"]},
    )


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
) -> dict[str, Any]:
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
