"""The one table from domain errors to HTTP, the one table of faces, and the handlers.

Each face of the server answers errors in its own standard's shape, decided by the path:

- the JSON API (everything but the two below): ``{"code", "message", "detail"}``;
- OGC API - Features (``/ogc``): its exception ``{"code", "description"}`` (plus our
  ``message`` and ``detail``), and 400 where the JSON API says 422;
- Open311 GeoReport v2 (``/open311``): a list ``[{"code": <status>, "description"}]`` (plus a
  ``jointgrid`` object with our stable code), 400 for 422 and 403 for 401.

Handlers never build bodies inline: they raise domain errors and this module answers, through
``render``. The route classes of ``/ogc`` and ``/open311`` and the middlewares (body limits,
the JSON guard, the last-resort catch) all answer through it too, so a 413, 415, 404, 405 or
500 has the same shape as any other error of its face.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import i18n
from api.usecases.policy import Forbidden
from gis import errors as e
from gis.errors import DomainError
from layers.errors import Unavailable

# The errors of the faces themselves (credentials, request size).


class Unauthenticated(DomainError):
    """No credentials, or credentials that are unknown, revoked or expired."""

    code = "unauthenticated"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"


log = logging.getLogger("jointgrid")

# Most specific first: the first class in the MRO found here wins.
STATUS: dict[type[e.DomainError], int] = {
    e.InvalidJson: 400,
    e.InvalidCursor: 400,
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
    Unavailable: 503,
    Unauthenticated: 401,
    Forbidden: 403,
    PayloadTooLarge: 413,
    e.UnsupportedMediaType: 415,
    e.MediaTooLarge: 413,
    e.TooManyMedia: 422,
    e.CorruptImage: 422,
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
    500: ("internal_error", "an unexpected error occurred; it has been logged"),
}

RETRY_AFTER_S = "5"


def status_for(exc: e.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "detail": detail}


# -- faces -------------------------------------------------------------------------------


def _api_shape(status: int, code: str, message: str, detail: Any) -> Any:
    return body(code, message, detail)


def _ogc_shape(status: int, code: str, message: str, detail: Any) -> Any:
    # OGC API's exception schema is {code, description}; message and detail keep our contract.
    return {"code": code, "description": message, "message": message, "detail": detail}


def _open311_shape(status: int, code: str, message: str, detail: Any) -> Any:
    # GeoReport v2: a list of {code: the HTTP status, description}.
    return [{"code": status, "description": message, "jointgrid": {"code": code, "detail": detail}}]


@dataclass(frozen=True)
class Face:
    """How one face of the server answers an error: its body shape, statuses and headers."""

    name: str
    prefixes: tuple[str, ...]
    shape: Callable[[int, str, str, Any], Any]
    statuses: dict[int, int] = field(default_factory=dict)  # our status -> the face's
    headers: dict[str, str] = field(default_factory=dict)
    www_authenticate: bool = False

    def owns(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.prefixes)


API = Face("api", (), _api_shape, www_authenticate=True)
FACES: tuple[Face, ...] = (
    Face("ogc", ("/ogc",), _ogc_shape, {422: 400}, {"Cache-Control": "no-store"}),
    Face("open311", ("/open311",), _open311_shape, {422: 400, 401: 403}),
)
FACE_BY_NAME = {f.name: f for f in (API, *FACES)}


def face_of(path: str) -> Face:
    """The face that answers for ``path`` (the JSON API unless a standard's prefix matches)."""
    for f in FACES:
        if f.owns(path):
            return f
    return API


def wanted_locale(request: Request | None) -> str | None:
    """The catalogue locale an ``Accept-Language`` header asks for first, if we have it.

    The API's ``code`` never changes with the language; only ``message`` does, so that a page
    (or a platform) that asks for Chinese shows "what was wrong and how to fix it" in Chinese,
    rendered from the code's template in the message catalogue (``api.i18n.error_text``).
    """
    header = request.headers.get("accept-language", "") if request is not None else ""
    ranked = []
    for i, part in enumerate(header.split(",")[:20]):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        if tag:
            ranked.append((-weight, i, tag.strip().replace("-", "_")))
    for _, _, tag in sorted(ranked):
        lang = tag.split("_")[0].lower()
        if lang == "zh":
            return "zh_CN"
        if lang == "en":
            return None
    return None


def render(
    face: Face | str,
    status: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: dict[str, str] | None = None,
    locale: str | None = None,
) -> Response:
    """The error response of ``face``: its shape, its status for ours, and the usual headers;
    with ``locale``, the message in that language (the code and detail never change)."""
    f = FACE_BY_NAME[face] if isinstance(face, str) else face
    status = f.statuses.get(status, status)
    extra = {**f.headers, **(headers or {})}
    if locale is not None:
        message = i18n.error_text(code, safe(detail), locale)
        extra["Content-Language"] = locale.replace("_", "-")
    if status == 503:
        extra.setdefault("Retry-After", RETRY_AFTER_S)
    if status == 401 and f.www_authenticate:
        extra.setdefault("WWW-Authenticate", 'Bearer realm="jointgrid"')
    payload = dumps(f.shape(status, code, message, safe(detail)))
    return Response(payload, status_code=status, media_type="application/json", headers=extra)


def render_domain(exc: e.DomainError, path: str, locale: str | None = None) -> Response:
    # An unavailable database says when to come back (overloaded: sooner than down).
    retry = getattr(exc, "retry_after_s", None)
    headers = {"Retry-After": str(retry)} if retry is not None else None
    return render(
        face_of(path), status_for(exc), exc.code, exc.message, exc.detail, headers, locale=locale
    )


def domain_response(exc: e.DomainError) -> Response:
    """A domain error in the JSON API's shape."""
    return render_domain(exc, "/api")


def render_http(exc: StarletteHTTPException, path: str, locale: str | None = None) -> Response:
    code, message = HTTP_CODES.get(exc.status_code, ("http_error", "request failed"))
    detail = exc.detail if isinstance(exc.detail, dict | list) else None
    if isinstance(exc.detail, str) and exc.detail not in ("Not Found", "Method Not Allowed"):
        message = exc.detail
    # raised by our middlewares (api.limits) with a code and detail of their own
    code = getattr(exc, "code", None) or code
    detail = getattr(exc, "body_detail", None) or detail
    return render(
        face_of(path),
        exc.status_code,
        code,
        message,
        detail,
        getattr(exc, "headers", None),
        locale=locale,
    )


def render_bug(path: str) -> Response:
    code, message = HTTP_CODES[500]
    return render(face_of(path), 500, code, message)


# -- JSON-safe bodies --------------------------------------------------------------------

MAX_TEXT = 300
MAX_ITEMS = 50
MAX_DEPTH = 6


def safe(value: Any, depth: int = 0) -> Any:
    """``value`` as something every JSON encoder takes: finite numbers, valid Unicode text,
    bounded size and depth. Error details echo what a client sent, and a client may send
    anything (NaN, a lone surrogate, raw bytes, a number of thousands of digits)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # beyond 2^53 a JavaScript reader loses digits, beyond 2^64 orjson refuses it
        return value if abs(value) < 2**53 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        text = value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return safe(bytes(value[: MAX_TEXT * 2]).decode("utf-8", "replace"), depth)
    if depth >= MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())[:MAX_ITEMS]
        return {str(safe(k, MAX_DEPTH)): safe(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        return [safe(v, depth + 1) for v in list(value)[:MAX_ITEMS]]
    try:
        text = repr(value)
    except Exception:  # a repr that itself fails (e.g. a structure too deep to print)
        text = f"<{type(value).__name__}>"
    return safe(text, depth)


def dumps(payload: Any) -> bytes:
    try:
        return orjson.dumps(payload)
    except TypeError:  # something `safe` did not see (a body built elsewhere): never a 500
        return json.dumps(payload, default=str, ensure_ascii=True).encode()


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors()[:MAX_ITEMS]:
        loc = [str(safe(p)) for p in err.get("loc", ()) if p != "body"]
        item = {"field": ".".join(loc) or "(body)", "problem": safe(err.get("msg", "invalid"))}
        if err.get("type") == "missing":
            item["fix"] = "add this field"
        elif "input" in err and err.get("type") != "json_invalid":
            item["got"] = _short(err["input"])
        out.append(item)
    return out


def _short(value: Any) -> Any:
    try:
        text = repr(value)
    except Exception:  # too deep or too large an integer to print
        return f"<{type(value).__name__}>"
    return safe(value) if len(text) <= 200 else safe(text[:200] + "…")


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
        if isinstance(exc, Unauthenticated) and _wants_page(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return render_domain(exc, request.url.path, wanted_locale(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        detail = _validation_detail(exc)
        first = detail[0] if detail else {"field": "(body)", "problem": "invalid"}
        message = f"{first['field']}: {first['problem']}"
        return render(
            face_of(request.url.path),
            422,
            "invalid_request",
            message,
            detail,
            locale=wanted_locale(request),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return render_http(exc, request.url.path, wanted_locale(request))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        # Reached only when LastResort could not answer (see below); kept as Starlette's own
        # last answer, in the face's shape.
        return render_bug(request.url.path)


Scope = dict[str, Any]


class LastResort:
    """Answer an unhandled exception with the face's 500 body, and keep HTTP's semantics.

    Starlette's ServerErrorMiddleware sends the 500 of the handler above and then re-raises,
    and the server, seeing an exception after a complete response, drops the connection
    without ``Connection: close``: a keep-alive client's next request then fails. Installed
    as the outermost of our middlewares, this one logs the traceback, answers, and returns
    normally, so the connection stays usable. When the response had already started (a
    stream broken halfway) there is nothing honest left to send, and the exception goes on
    so that the server closes the connection, the only way to tell the client.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await render_bug(scope.get("path", "/"))(scope, receive, send)
