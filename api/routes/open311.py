"""Open311 GeoReport v2 (JSON) under ``/open311/v2``: the catalogue as services, cases as requests.

A request posted here goes through the same case engine as ``POST /api/v1/incidents``
(``api.usecases.cases.report``), so it is located, routed and stored exactly the same way.

Mappings (stable; clients may rely on them):

- ``service_code`` is a catalogue category code; ``group`` is its category group's name.
- ``service_request_id`` is the case code (``JG20261127-000001``). Wherever an id is read, the
  case's uuid is accepted too.
- ``status``: ``closed`` for the terminal statuses (closed, rejected, duplicate), ``open`` for
  every other (reported … resolved, verified); ``status_notes`` gives the workflow status.
- ``requested_datetime`` is when the case was reported, ``updated_datetime`` its last change,
  ``expected_datetime`` its due time. ``lat``/``long`` are WGS84.
- ``agency_responsible`` names the six-link mechanism and the lead side
  (``joint_mediation 联调 / lead 510904``, or ``single side / lead 510904``); the extension object
  ``jointgrid`` carries the case's public fields, named as in the OGC ``incidents`` collection.
- GET answers follow the one public rule (``gis.redaction``), like the OGC feed: no reporter,
  description, contacts, teams or routing trace; a case in a ``sensitive`` category is placed at
  its grid's centroid with its distance to the border withheld.

Every error under ``/open311/v2`` answers with the GeoReport error body
``[{"code": 400, "description": "…"}]`` (plus a ``jointgrid`` object with our stable error code):
what the JSON API refuses with 422 is 400 here, and a missing or bad key (401 there) is 403.
Only JSON is served; ``.xml`` answers 400.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import errors, params
from api.access import ALL_ROLES, CASE_ROLES, Principal, allow
from api.deps import CatalogueDep, Conn, ReadConn
from api.usecases import cases
from api.usecases.media import public_url
from api.usecases.schemas import Reporter, ReportIn
from gis import redaction
from gis.catalogue import Catalogue
from gis.errors import DomainError, InvalidInput, NotFound
from gis.location import check_lonlat
from gis.workflow import STATUSES, TERMINAL
from layers import grids, incidents, media

log = logging.getLogger("jointgrid")

PREFIX = "/open311/v2"
MAX_WINDOW = timedelta(days=90)  # GeoReport v2: a search may not span more than 90 days
MAX_REQUESTS = 1000  # newest first; the usual cap of a GeoReport v2 search
MAX_IDS = 100  # service_request_id values in one search

CLOSED: frozenset[str] = TERMINAL
OPEN: frozenset[str] = frozenset(STATUSES) - TERMINAL
OPEN311_STATUS: dict[str, frozenset[str]] = {"open": OPEN, "closed": CLOSED}

STATUS_NOTES: dict[str, str] = {
    "reported": "awaiting acceptance",
    "accepted": "awaiting dispatch",
    "dispatched": "dispatched to the responsible teams",
    "in_progress": "being handled",
    "resolved": "awaiting verification by every involved side",
    "verified": "verified by every involved side; awaiting closure",
    "closed": "closed after verification by every involved side",
    "rejected": "not taken on as a case",
    "duplicate": "merged into another case",
}


# -- errors ---------------------------------------------------------------------------------


def error_response(
    status: int,
    description: str,
    *,
    code: str | None = None,
    detail: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The GeoReport v2 error body (one table of faces: ``api.errors``)."""
    code = code or errors.HTTP_CODES.get(status, ("http_error", ""))[0]
    return errors.render("open311", status, code, description, detail, headers)


def _open311_status(status: int) -> int:
    # GeoReport v2 has no 422 and no 401: what the JSON API refuses as unprocessable is a bad
    # request here, and a missing or unknown key is its 403 ("api_key was not provided or invalid").
    return {422: 400, 401: 403}.get(status, status)


def _validation_text(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors()[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        problems.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(problems) or "the request is malformed"


def as_open311(exc: Exception, request: Request) -> Response:
    """Answer any error raised under ``/open311/v2`` with the GeoReport error body."""
    if isinstance(exc, DomainError):
        status = _open311_status(errors.status_for(exc))
        headers = {"Retry-After": str(getattr(exc, "retry_after_s", 5))} if status == 503 else None
        return error_response(
            status, exc.message, code=exc.code, detail=exc.detail, headers=headers
        )
    if isinstance(exc, RequestValidationError):
        return error_response(400, _validation_text(exc), code="invalid_request")
    if isinstance(exc, StarletteHTTPException):
        return errors.render_http(exc, request.url.path)
    # A 500 is a bug: log it with its traceback, and tell the caller nothing internal.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "an unexpected error occurred; it has been logged")


class Open311Route(APIRoute):
    """A route whose every error, validation included, answers with the GeoReport error body.

    Scoped to this module's router, so the JSON API's handlers in ``api.errors`` stay as they are.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # every error, not only ours: no 422 or HTML shapes here
                return as_open311(exc, request)

        return handle


# The rule of every GeoReport read: any key (also as `api_key`), or anyone with public feeds on.
READ = allow(*ALL_ROLES, public_feed=True, key_param="api_key")

router = APIRouter(prefix=PREFIX, tags=["open311"], route_class=Open311Route)


# -- shared parameters ----------------------------------------------------------------------

ApiKey = Annotated[
    str | None,
    Query(description="An API key, for clients that cannot send an Authorization header."),
]
JurisdictionId = Annotated[
    str | None, Query(description="Accepted and ignored: this endpoint serves one jurisdiction.")
]
Format = Annotated[str, Path(description="the response format: only json is served")]


def _json_only(fmt: str) -> None:
    if fmt != "json":
        raise InvalidInput(
            f"format {fmt[:20]!r} is not supported: this server speaks JSON only; "
            "use the .json resource",
            {"supported": ["json"]},
        )


def _georeport(fmt: Format, api_key: ApiKey = None, jurisdiction_id: JurisdictionId = None) -> None:
    """What every GeoReport v2 read takes besides its own parameters: the format (json only),
    the key as a query parameter (checked by ``READ``) and the jurisdiction (ignored)."""
    _json_only(fmt)


def _read(path: str, summary: str) -> Callable[[Any], Any]:
    """A GeoReport v2 read at ``path``: ``READ``'s access rule and ``_georeport``'s parameters."""
    return router.get(path, summary=summary, dependencies=[READ, Depends(_georeport)])


def _no_nul(**values: str | None) -> None:
    """Refuse NUL characters: PostgreSQL text cannot hold them."""
    bad = [name for name, v in values.items() if v is not None and "\x00" in v]
    if bad:
        raise InvalidInput(f"{', '.join(bad)} may not contain NUL characters", {"fields": bad})


def _w3c(value: datetime | str | None) -> str | None:
    """An ISO 8601 time as the W3C profile GeoReport uses (seconds, with the zone)."""
    if value is None:
        return None
    t = datetime.fromisoformat(value) if isinstance(value, str) else value
    return t.isoformat(timespec="seconds")


# -- services -------------------------------------------------------------------------------


def service_view(code: str, catalogue: Catalogue) -> dict[str, Any]:
    """One catalogue category as a GeoReport service."""
    c = catalogue.categories[code]
    g = catalogue.groups[c.group]
    mech_code = catalogue.mechanism_for(code)
    m = catalogue.mechanisms[mech_code]
    return {
        "service_code": code,
        "service_name": f"{c.name} {c.name_en}",
        "description": f"{c.name} {c.name_en} ({g.name} {g.name_en}). A cross-boundary case "
        f"goes to {m.name} {m.name_en} ({mech_code}).",
        "metadata": False,
        "type": "realtime",
        "keywords": ", ".join(
            dict.fromkeys([code, c.name, c.name_en, c.group, g.name, g.name_en, m.name])
        ),
        "group": f"{g.name} {g.name_en}",
        "jointgrid": {
            "group": c.group,
            "mechanism": mech_code,
            "sensitive": c.sensitive,
        },
    }


@_read("/services.{fmt}", "GeoReport v2: the service list (the category catalogue)")
def get_services(
    catalogue: CatalogueDep,
) -> JSONResponse:
    return JSONResponse([service_view(code, catalogue) for code in catalogue.categories])


@_read("/services/{service_code}.{fmt}", "GeoReport v2: a service definition (no attributes)")
def get_service_definition(
    service_code: str,
    catalogue: CatalogueDep,
) -> JSONResponse:
    if service_code not in catalogue.categories:
        raise NotFound(
            f"no service {service_code[:100]!r}; see services.json",
            {"valid": sorted(catalogue.categories)},
        )
    return JSONResponse({"service_code": service_code, "attributes": []})


# -- service requests: reading ----------------------------------------------------------------


def _agency(case: dict[str, Any], catalogue: Catalogue) -> str:
    mech = case["mechanism"]
    if mech is None:
        return f"single side / lead {case['lead_side']}"
    m = catalogue.mechanisms.get(mech)
    return f"{mech} {m.name if m else ''}".strip() + f" / lead {case['lead_side']}"


def _notice(case: dict[str, Any], catalogue: Catalogue) -> str:
    due = _w3c(case["due_at"])
    mech = case["mechanism"]
    if mech is None:
        return (
            f"handled by side {case['lead_side']} alone, through its own grid and police grid; "
            f"expected by {due}"
        )
    m = catalogue.mechanisms.get(mech)
    name = f"{m.name} {m.name_en}" if m else mech
    return (
        f"跨界 cross-boundary case ({', '.join(case['reasons'])}): handled by "
        f"{name} ({mech}) with sides {', '.join(case['sides'])}, lead side {case['lead_side']}; "
        f"expected by {due}"
    )


def _status_notes(case: dict[str, Any], catalogue: Catalogue) -> str:
    status = case["status"]
    text = f"{status}: {STATUS_NOTES.get(status, status)}"
    level = case["escalation_level"] or 0
    if level > 0 and level < len(catalogue.escalation):
        rung = catalogue.escalation[level]
        text += f"; escalated to {rung.name} {rung.name_en}"
    return text


def service_requests(
    conn: Conn, rows: list[dict[str, Any]], catalogue: Catalogue, *, base: str = ""
) -> list[dict[str, Any]]:
    """Stored cases as GeoReport v2 service requests, with sensitive ones moved off their point.

    ``media_url`` is the public link (under ``base``) of a case's first photo's stripped screen
    copy; a sensitive case links none.
    """
    sensitive = catalogue.sensitive_categories
    centres = grids.centroids(
        conn, (r["grid_code"] for r in rows if r["category"] in sensitive and r["grid_code"])
    )
    tokens = media.public_tokens(conn, (r["id"] for r in rows if r["category"] not in sensitive))
    out = [service_request(r, catalogue, centres.get(r["grid_code"] or "")) for r in rows]
    for r, doc in zip(rows, out, strict=True):
        if tokens.get(r["id"]):
            doc["media_url"] = base + public_url(tokens[r["id"]][0])
    return out


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def service_request(
    row: dict[str, Any], catalogue: Catalogue, grid_centroid: tuple[float, float] | None = None
) -> dict[str, Any]:
    """A stored case as a GeoReport v2 service request, under the public rule that the OGC
    incidents feed applies too (``gis.redaction``): its public fields only, with a sensitive
    case moved to ``published_point`` and its locating fields withheld. The description, teams,
    contacts and routing trace are never published here.
    """
    category = catalogue.categories.get(row["category"])
    coords = (row.get("location") or {}).get("coordinates")
    case, point = redaction.public_case(
        row,
        sensitive=bool(category and category.sensitive),
        lonlat=(coords[0], coords[1]) if coords else None,
        grid_centroid=grid_centroid,
    )
    lon, lat = point if point is not None else (None, None)
    return {
        "service_request_id": case["code"],
        "status": "closed" if case["status"] in CLOSED else "open",
        "status_notes": _status_notes(case, catalogue),
        "service_name": f"{category.name} {category.name_en}" if category else case["category"],
        "service_code": case["category"],
        "description": "",  # private on every public surface
        "agency_responsible": _agency(case, catalogue),
        "service_notice": _notice(case, catalogue),
        "requested_datetime": _w3c(case["reported_at"]),
        "updated_datetime": _w3c(case["updated_at"]),
        "expected_datetime": _w3c(case["due_at"]),
        "address": "",
        "address_id": None,
        "zipcode": None,
        "lat": lat,
        "long": lon,
        "media_url": None,
        "jointgrid": {
            **{name: _plain(value) for name, value in case.items()},
            "group": category.group if category else None,
            "description_withheld": True,
        },
    }


def search_window(
    start: datetime | None, end: datetime | None, *, now: datetime
) -> tuple[datetime, datetime]:
    """The search window as (since, until), until exclusive, in UTC.

    The last 90 days by default; from start_date or up to end_date, 90 days; never more.
    """
    try:
        if start is None and end is None:
            start, end = now - MAX_WINDOW, now
        elif start is None:
            assert end is not None
            start = end - MAX_WINDOW
        elif end is None:
            end = start + MAX_WINDOW
        # In UTC, and with the exclusive upper bound the case list takes (end_date is inclusive):
        # a date too far off fails here rather than in the database.
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        until = end + timedelta(microseconds=1)
    except OverflowError:
        raise InvalidInput(
            "start_date or end_date is too far in the past or future",
            {"example": "2026-11-27T08:00:00+08:00"},
        ) from None
    if end < start:
        raise InvalidInput(
            "end_date is before start_date",
            {"start_date": start.isoformat(), "end_date": end.isoformat()},
        )
    if end - start > MAX_WINDOW:
        raise InvalidInput(
            "start_date and end_date may not span more than 90 days",
            {"start_date": start.isoformat(), "end_date": end.isoformat(), "max_days": 90},
        )
    return start, until


@_read("/requests.{fmt}", "GeoReport v2: service requests (cases), newest first, at most 1,000")
def get_requests(
    request: Request,
    conn: ReadConn,
    catalogue: CatalogueDep,
    service_request_id: Annotated[
        str | None,
        Query(description="comma-separated request ids (case codes); other filters are ignored"),
    ] = None,
    service_code: Annotated[str | None, Query(description="comma-separated service codes")] = None,
    start_date: Annotated[
        str | None, Query(description="requested at or after (W3C datetime with zone)")
    ] = None,
    end_date: Annotated[
        str | None, Query(description="requested at or before (W3C datetime with zone)")
    ] = None,
    status: Annotated[
        str | None, Query(description="open, closed, or both (comma-separated)")
    ] = None,
) -> JSONResponse:
    _no_nul(
        service_request_id=service_request_id,
        service_code=service_code,
        start_date=start_date,
        end_date=end_date,
        status=status,
    )
    if service_request_id:
        rows = _by_ids(conn, params.parse_csv(service_request_id, name="service_request_id"))
    else:
        codes = params.parse_csv(service_code, name="service_code", valid=set(catalogue.categories))
        wanted = params.parse_csv((status or "").lower(), name="status", valid=set(OPEN311_STATUS))
        since, until = search_window(
            params.parse_time(start_date, name="start_date"),
            params.parse_time(end_date, name="end_date"),
            now=cases.now_utc(),
        )
        statuses = sorted(set().union(*(OPEN311_STATUS[s] for s in wanted)))
        rows = incidents.list_cases(
            conn,
            filters={
                "category": codes,
                "status": statuses,
                "since": since,
                "until": until,
            },
            bbox=None,
            limit=MAX_REQUESTS,
            after=None,
        )
    return JSONResponse(service_requests(conn, rows, catalogue, base=_origin(request)))


def _by_ids(conn: Conn, ids: list[str]) -> list[dict[str, Any]]:
    ids = list(dict.fromkeys(ids))
    if len(ids) > MAX_IDS:
        raise InvalidInput(
            f"at most {MAX_IDS} service_request_id values in one search", {"given": len(ids)}
        )
    rows: dict[str, dict[str, Any]] = {}
    for one in ids:
        try:
            row = incidents.get(conn, one)
        except NotFound:
            continue  # a search answers with what it finds
        rows.setdefault(row["id"], row)
    return list(rows.values())


@_read("/requests/{service_request_id}.{fmt}", "GeoReport v2: one service request")
def get_request(
    request: Request,
    service_request_id: str,
    conn: Conn,
    catalogue: CatalogueDep,
) -> JSONResponse:
    _no_nul(service_request_id=service_request_id)
    try:
        row = incidents.get(conn, service_request_id)
    except NotFound:
        raise NotFound(
            f"no service request {service_request_id[:100]!r}",
            {"service_request_id": service_request_id[:100]},
        ) from None
    return JSONResponse(service_requests(conn, [row], catalogue, base=_origin(request)))


def _origin(request: Request) -> str:
    return str(request.base_url).rstrip("/")


# -- service requests: reporting --------------------------------------------------------------


class RequestForm(BaseModel):
    """The GeoReport v2 POST fields (``application/x-www-form-urlencoded``), all as sent."""

    lat: str | None = None
    long: str | None = None
    service_code: str | None = None
    description: str | None = None
    api_key: str | None = None
    jurisdiction_id: str | None = None
    address_string: str | None = None
    address_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    device_id: str | None = None
    account_id: str | None = None
    media_url: str | None = None


class Open311Reporter(Reporter):
    """The reporter as GeoReport v2 describes them, kept only in the case's private record.

    ``cases.report`` stores ``reporter.model_dump()`` as the private reporter record, so these
    fields are written in the same transaction as the case. They stay out of the idempotency
    hash (it follows ``ReportIn``'s fields), so a retry is the same report whoever sends it.
    The address and media link are kept here, unpublished: both are free input from the
    reporter, and a media link is not checked.
    """

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, max_length=320)
    device_id: str | None = Field(default=None, max_length=200)
    account_id: str | None = Field(default=None, max_length=200)
    address_string: str | None = Field(default=None, max_length=1000)
    media_url: str | None = Field(default=None, max_length=2000)


# Our field names, as the GeoReport v2 fields they came from (for error messages).
_FORM_NAMES = {
    "category": "service_code",
    "description": "description",
    "reporter.name": "first_name/last_name",
    "reporter.phone": "phone",
    "reporter.email": "email",
    "reporter.device_id": "device_id",
    "reporter.account_id": "account_id",
    "reporter.address_string": "address_string",
    "reporter.media_url": "media_url",
}


def _invalid(exc: ValidationError, *, prefix: str = "") -> InvalidInput:
    problems = []
    for err in exc.errors(include_url=False)[:5]:
        field = prefix + ".".join(str(p) for p in err.get("loc", ()))
        problems.append(f"{_FORM_NAMES.get(field, field)}: {err.get('msg', 'invalid')}")
    return InvalidInput("; ".join(problems) or "the request is malformed", {"fields": problems})


def report_body(form: RequestForm) -> ReportIn:
    """The JSON API's report body for a GeoReport v2 POST; raise ``InvalidInput`` if it is bad."""
    _no_nul(**form.model_dump())
    f = {k: (v.strip() or None) if isinstance(v, str) else v for k, v in form.model_dump().items()}
    if not f["service_code"]:
        raise InvalidInput(
            "service_code is required; see services.json for the codes", {"missing": "service_code"}
        )
    if f["lat"] is None or f["long"] is None:
        raise InvalidInput(
            "lat and long are required (WGS84 decimal degrees); "
            "this server does not look up addresses",
            {"missing": [n for n in ("lat", "long") if f[n] is None]},
        )
    lon, lat = check_lonlat(f["long"], f["lat"])
    name = " ".join(p for p in (f["first_name"], f["last_name"]) if p) or None
    identity = {
        "name": name,
        "phone": f["phone"],
        "email": f["email"],
        "device_id": f["device_id"],
        "account_id": f["account_id"],
        "address_string": f["address_string"],
        "media_url": f["media_url"],
    }
    reporter = None
    if any(v is not None for v in identity.values()):
        try:
            reporter = Open311Reporter(**identity)
        except ValidationError as exc:
            raise _invalid(exc, prefix="reporter.") from None
    try:
        return ReportIn(
            lon=lon,
            lat=lat,
            crs="wgs84",
            category=f["service_code"],
            description=f["description"] or "",
            reporter=reporter,
        )
    except ValidationError as exc:
        raise _invalid(exc) from None


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="A unique key per report. Retries with the same key and fields return the "
        "same request; the same key with other fields is refused (409).",
    ),
]
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@router.post(
    "/requests.{fmt}",
    status_code=201,
    summary="GeoReport v2: report a service request; it is routed and stored as a case",
    responses={200: {"description": "a retry with the same Idempotency-Key"}},
)
def post_request(
    fmt: Format,
    request: Request,
    form: Annotated[RequestForm, Form()],
    conn: Conn,
    catalogue: CatalogueDep,
    who: Annotated[Principal, allow(*CASE_ROLES, key_param="api_key")],
    idempotency_key: IdempotencyKey = None,
    api_key: ApiKey = None,
) -> JSONResponse:
    _json_only(fmt)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in FORM_TYPES:
        raise InvalidInput(
            "send the fields as application/x-www-form-urlencoded (GeoReport v2); "
            "JSON reports go to POST /api/v1/incidents",
            {"content_type": content_type[:100] or None},
        )
    body = report_body(form)
    # The key itself is never stored: the actor names it by its public id.
    actor = {**who.actor(), "via": "open311"}
    case, created = cases.report(
        conn, body, catalogue, idempotency_key=idempotency_key, actor=actor
    )
    answer = {
        "service_request_id": case["code"],
        "service_notice": _notice({**case, "reasons": case["cross_boundary_reasons"]}, catalogue),
        "account_id": (form.account_id or "").strip() or None,
    }
    return JSONResponse(
        [answer],
        status_code=201 if created else 200,
        headers={"Location": f"{PREFIX}/requests/{case['code']}.json"},
    )


# -- anything else under /open311/v2 ----------------------------------------------------------


@router.api_route(
    "/{rest:path}",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,
    dependencies=[allow(anyone=True)],
)
def not_here(rest: str, request: Request) -> Response:
    """Unknown resources answer 404, and known ones with another method 405, as GeoReport errors."""
    allowed: set[str] = set()
    for route in router.routes:  # every resource under /open311/v2 is on this router
        if (
            isinstance(route, APIRoute)
            and route.endpoint is not not_here
            and route.path_regex.match(request.url.path)
        ):
            allowed |= route.methods or set()
    if allowed:
        return error_response(
            405,
            f"{request.method} is not allowed here; use {', '.join(sorted(allowed))}",
            code="method_not_allowed",
            headers={"Allow": ", ".join(sorted(allowed))},
        )
    raise NotFound(
        "no such Open311 resource; GeoReport v2 (JSON) offers services.json, "
        "services/{service_code}.json, requests.json and requests/{service_request_id}.json",
        {"path": request.url.path[:200]},
    )


def install(app: FastAPI) -> None:
    """Register the GeoReport v2 routes; their errors answer in the GeoReport shape."""
    app.include_router(router)
