"""The one table from domain errors to HTTP, and the handlers that apply it.

Every error body is ``{"code", "message", "detail"}``. Handlers never build bodies inline: they
raise domain errors and this module answers.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gis import errors as e

log = logging.getLogger("jointgrid")

# Most specific first: the first class in the MRO found here wins.
STATUS: dict[type[e.DomainError], int] = {
    e.InvalidCoordinates: 422,
    e.UnknownCrs: 422,
    e.GeometryTooLarge: 422,
    e.InvalidGeometry: 422,
    e.UnknownCategory: 422,
    e.UnknownSide: 422,
    e.UnknownSeverity: 422,
    e.InvalidInput: 422,
    e.OutsideServiceArea: 422,
    e.ImportRejected: 422,
    e.CatalogueError: 422,
    e.NotFound: 404,
    e.IdempotencyConflict: 409,
    e.TransitionNotAllowed: 409,
    e.Conflict: 409,
    e.Unavailable: 503,
    e.Unauthenticated: 401,
    e.Forbidden: 403,
    e.PayloadTooLarge: 413,
}

HTTP_CODES = {
    400: ("bad_request", "the request is malformed"),
    401: ("unauthenticated", "authentication is required"),
    403: ("forbidden", "this key may not do that"),
    404: ("not_found", "no such resource; see /docs for the API"),
    405: ("method_not_allowed", "this method is not allowed here; see /docs"),
    406: ("not_acceptable", "no representation in the requested format"),
    413: ("payload_too_large", "the request body is too large"),
    415: ("unsupported_media_type", "send the body as application/json"),
}


def status_for(exc: e.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "detail": detail}


def domain_response(exc: e.DomainError) -> JSONResponse:
    status = status_for(exc)
    headers = {"Retry-After": str(getattr(exc, "retry_after_s", 5))} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="jointgrid"'}
    return JSONResponse(
        body(exc.code, exc.message, exc.detail), status_code=status, headers=headers
    )


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        item = {"field": ".".join(loc) or "(body)", "problem": err.get("msg", "invalid")}
        if err.get("type") == "missing":
            item["fix"] = "add this field"
        elif "input" in err and err.get("type") != "json_invalid":
            item["got"] = _short(err["input"])
        out.append(item)
    return out


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 200 else text[:200] + "…"


API_PREFIXES = ("/api/", "/ogc", "/open311/", "/healthz")


def _wants_page(request: Request) -> bool:
    """A browser asking for a page (not an API client): send it to the sign-in page instead."""
    return (
        request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
        and not request.url.path.startswith(API_PREFIXES)
    )


def add_exception_handlers(app: FastAPI) -> None:
    """Register the handlers once, when the app is created."""

    @app.exception_handler(e.DomainError)
    async def _domain(request: Request, exc: e.DomainError) -> Response:
        if isinstance(exc, e.Unauthenticated) and _wants_page(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return domain_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = _validation_detail(exc)
        first = detail[0] if detail else {"field": "(body)", "problem": "invalid"}
        return JSONResponse(
            body(
                "invalid_request",
                f"{first['field']}: {first['problem']}",
                detail,
            ),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = HTTP_CODES.get(exc.status_code, ("http_error", "request failed"))
        detail = exc.detail if isinstance(exc.detail, dict | list) else None
        if isinstance(exc.detail, str) and exc.detail not in ("Not Found", "Method Not Allowed"):
            message = exc.detail
        return JSONResponse(
            body(code, message, detail),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # A 500 is a bug: log it with its traceback, and tell the caller nothing internal.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            body("internal_error", "an unexpected error occurred; it has been logged"),
            status_code=500,
        )
