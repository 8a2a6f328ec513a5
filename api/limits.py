"""What a request body may be, as plain ASGI middleware, answered in each face's error shape.

- ``BodyLimit``: the size of a body, per route. An ordered list of rules ``(methods, path
  regex, max_bytes)``, first match wins, else the default. Settings
  (``JOINTGRID_BODY_LIMITS``, ``JOINTGRID_MAX_BODY_BYTES``) come before the rules here.
- ``JsonBodies``: on every route whose body FastAPI reads as JSON, the body must say it is JSON
  (else 415) and be strict JSON (else 400 ``invalid_json``): no NaN or Infinity, no lone
  surrogate, no nesting deeper than ``MAX_JSON_DEPTH``. One guard at the parsing level
  rather than a check per field: every field of every model, present and future, is covered.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import params as fastapi_params
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from api import errors
from gis.errors import InvalidJson

Scope = dict[str, Any]

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class BodyRule:
    """Bodies of ``methods`` (empty: any) on paths matching ``path`` (a regex) take up to
    ``max_bytes``."""

    methods: tuple[str, ...]
    path: str
    max_bytes: int


# First match wins. To give a route more room, add one line here (or set JOINTGRID_BODY_LIMITS).
RULES: tuple[BodyRule, ...] = (
    BodyRule(("POST",), r"/api/v1/incidents/[^/]+/transitions", 16 * KiB),
    BodyRule(("POST",), r"/api/v1/incidents", 1 * MiB),
    BodyRule(("POST",), r"/api/v1/route", 1 * MiB),
    BodyRule(("POST",), r"/login|/logout", 16 * KiB),
    # Photo uploads: api.app.media_body_rule, sized from the media settings, comes first.
)


class TooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes its limit; FastAPI lets an
    HTTPException through its body parsing, and BodyLimit answers it when nobody else did."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes:,} bytes")
        self.max_bytes = max_bytes
        self.body_detail = {"max_bytes": max_bytes}


class BodyLimit:
    """Refuse request bodies larger than their route's limit (by Content-Length, or while
    streaming) with 413 in the face's error shape."""

    def __init__(self, app: Any, max_bytes: int, rules: Iterable[BodyRule] = RULES) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.rules = tuple(rules)
        self.compiled = [(r, re.compile(r.path)) for r in self.rules]

    def limit_for(self, method: str, path: str) -> int:
        for rule, rx in self.compiled:
            if (not rule.methods or method in rule.methods) and rx.fullmatch(path):
                return rule.max_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "/")
        limit = self.limit_for(scope.get("method", "GET"), path)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                too_big = False
            if too_big:
                await self._refuse(scope, receive, send, limit)
                return
        seen = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge(limit)
            return message

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked)
        except TooLarge:  # raised outside the app's own handlers (e.g. by JsonBodies)
            if started:
                raise
            await self._refuse(scope, receive, send, limit)

    async def _refuse(self, scope: Scope, receive: Any, send: Any, limit: int) -> None:
        response = errors.render(
            errors.face_of(scope.get("path", "/")),
            413,
            "payload_too_large",
            f"the request body is larger than {limit:,} bytes",
            {"max_bytes": limit},
        )
        await response(scope, receive, send)


# -- strict JSON -------------------------------------------------------------------------

MAX_JSON_DEPTH = 32  # a GeoJSON MultiPolygon inside a report is 6 deep


def strict_json(
    raw: bytes | str, *, what: str = "the body", max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """Parse strict JSON (RFC 8259), or raise ``InvalidJson`` saying what is wrong.

    orjson refuses what Python's json module lets through and what later fails far from the
    input (a 500): NaN and Infinity, numbers beyond a double, lone surrogates, invalid UTF-8.
    The depth is checked here as well, since geometry and validation code recurse.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(
            f"{what} is not valid JSON: {exc.msg} at character {exc.pos}",
            {"position": exc.pos, "fix": "send strict JSON (no NaN, Infinity or lone surrogates)"},
        ) from None
    if _too_deep(raw if isinstance(raw, bytes) else raw.encode(), max_depth):
        raise InvalidJson(
            f"{what} is nested too deeply (more than {max_depth} levels)",
            {"max_depth": max_depth},
        )
    return value


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _too_deep(raw: bytes, limit: int) -> bool:
    """Whether lists and objects in ``raw`` (valid JSON) nest more than ``limit`` deep.

    On the bytes, not the parsed tree: with the strings cut out only the brackets are kept,
    and the depth is their running sum (numpy). A 1 MB polygon takes a few milliseconds,
    where walking its parsed tree in Python took a fifth of a second.
    """
    brackets = _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if len(brackets) <= 2 * limit:
        return False
    # "[" and "{" are 91 and 123, "]" and "}" 93 and 125: 1 for an opening, -1 for a closing
    codes = np.frombuffer(brackets, dtype=np.uint8).astype(np.int32)
    steps = ((codes & 0x1F) == 27).astype(np.int32) * 2 - 1
    return bool(np.cumsum(steps).max() > limit)


def is_json(content_type: str) -> bool:
    """Whether a Content-Type names JSON (``application/json`` or a ``+json`` type)."""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _takes_json(route: APIRoute) -> bool:
    field = route.body_field
    return field is not None and not isinstance(field.field_info, fastapi_params.Form)


class BodyRefused(HTTPException):
    """A body refused while FastAPI reads it; it lets an HTTPException through its body
    parsing, and ``api.errors`` answers it in the face's shape with this code and detail."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(status, message)
        self.code = code
        self.message = message
        self.body_detail = detail


class JsonBodies:
    """415 for a body that does not say it is JSON, 400 for one that is not strict JSON, on
    every route whose body FastAPI reads as JSON.

    FastAPI itself hands a non-JSON body to validation as raw bytes (a 422 at best, and a
    500 when the error detail echoes them), and parses JSON with Python's lenient parser.
    The check happens when the route reads its body, so the route is known (the router has
    put it into the scope) and nothing is read for a route that never reads its body.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        first = True

        async def checked() -> dict[str, Any]:
            nonlocal first
            if not first:
                return await receive()
            first = False
            route = scope.get("route")
            if not (isinstance(route, APIRoute) and _takes_json(route)):
                return await receive()
            chunks: list[bytes] = []
            while True:
                message: dict[str, Any] = await receive()
                if message["type"] != "http.request":  # the client left before the end
                    return message
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            raw = b"".join(chunks)
            if raw:
                _check_json(raw, dict(scope.get("headers") or []).get(b"content-type", b""))
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.app(scope, checked, send)


def _check_json(raw: bytes, content_type: bytes) -> None:
    ctype = content_type.decode("latin-1")
    if not is_json(ctype):
        got = ctype[:100] or "none"
        raise BodyRefused(
            415,
            "unsupported_media_type",
            f"this route reads JSON; send the body with Content-Type: application/json (got {got})",
            {"content_type": got, "expected": "application/json"},
        )
    try:
        strict_json(raw)
    except InvalidJson as exc:
        raise BodyRefused(400, exc.code, exc.message, exc.detail) from None
