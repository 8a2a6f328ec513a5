"""Positions in: Traccar's OsmAnd protocol (``/osmand``), OwnTracks' HTTP mode (``/owntracks``),
offline batches (``POST /api/v1/positions``) and explicit patrol start and stop
(``POST /api/v1/patrols``).

These routes take a device's key, never an API key: the device's own credentials are checked
by the use-case (``api.positions``), and a device key opens no other route. Their access rule
says so (``device_only``), for the suite that walks every route's rule.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api import errors
from api.access import SESSION_COOKIE, Rule
from api.deps import database
from api.limits import strict_json
from api.settings import patrol
from api.usecases import positions as usecase
from gis import fixes as fx
from gis.errors import InvalidInput
from layers.registry import keyed

router = APIRouter(tags=["positions"])


def device_only() -> Any:
    """The access rule of the device routes: a device's id and key, checked by the use-case."""

    async def check() -> None:
        return None

    check.access_rule = Rule(roles=("device",))  # type: ignore[attr-defined]
    return Depends(check)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _basic(request: Request) -> tuple[str | None, str | None]:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, _, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return user, password


def _is_json(request: Request, raw: bytes) -> bool:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return ctype == "application/json" or (ctype == "" and raw.lstrip()[:1] == b"{")


@router.api_route(
    "/osmand", methods=["GET", "POST"], include_in_schema=False, dependencies=[device_only()]
)
async def osmand(request: Request) -> Response:
    """Traccar's OsmAnd protocol: 200 for every well-formed request of a known device."""
    params = dict(request.query_params)
    raw = await request.body() if request.method == "POST" else b""
    body: Any = None
    if raw.strip():
        if _is_json(request, raw):
            body = strict_json(raw)
        elif "id" not in params and "deviceid" not in params:
            # the form fields in the body, as Traccar reads them when the query has none
            params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    now = datetime.now(UTC)
    if body is not None:
        device_id = str(body.get("device_id", "")) if isinstance(body, dict) else ""

        def read(crs: str) -> fx.Fix | None:
            return fx.osmand_json(body, crs=crs, now=now)[1]
    else:
        device_id = params.get("id") or params.get("deviceid") or ""

        def read(crs: str) -> fx.Fix | None:
            return fx.osmand_query(params, crs=crs, now=now)

    await database(request).run(
        lambda conn: usecase.live(
            conn,
            device_id=device_id,
            key=params.get("key"),
            read=read,
            source="osmand",
            settings=patrol(),
            now=now,
        )
    )
    return Response(status_code=200)


@router.post("/owntracks", include_in_schema=False, dependencies=[device_only()])
async def owntracks(request: Request) -> Response:
    """OwnTracks' HTTP mode: the device id and key as HTTP Basic user and password; the
    answer is a JSON array (empty: we send no friends' locations back)."""
    user, password = _basic(request)
    raw = await request.body()
    now = datetime.now(UTC)
    body = strict_json(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise InvalidInput("an OwnTracks message is a JSON object", {})
    kind = body.get("_type")

    def read(crs: str) -> fx.Fix | None:
        return fx.owntracks(body, crs=crs, now=now)

    if kind == "location":
        await database(request).run(
            lambda conn: usecase.live(
                conn,
                device_id=user,
                key=password,
                read=read,
                source="owntracks",
                settings=patrol(),
                now=now,
            )
        )
    else:  # other messages (status, transition, waypoints...) are acknowledged and not kept
        await database(request).run(lambda conn: usecase.device_for(conn, user, password))
    return Response(b"[]", media_type="application/json")


@router.post(
    "/api/v1/positions",
    summary="A batch of a device's fixes (e.g. queued offline); idempotent per device and time",
    dependencies=[device_only()],
)
async def post_positions(request: Request) -> Response:
    body = strict_json(await request.body())
    if not isinstance(body, dict):
        raise InvalidInput('the body is {"device": ..., "fixes": [...]}', {})
    key = _bearer(request)
    out = await database(request).run(
        lambda conn: usecase.batch(conn, key=key, body=body, settings=patrol())
    )
    return Response(orjson.dumps(out), media_type="application/json")


@router.post(
    "/api/v1/patrols",
    summary="Start or stop a device's patrol explicitly",
    dependencies=[device_only()],
)
async def post_patrol(request: Request) -> Response:
    body = strict_json(await request.body())
    if not isinstance(body, dict):
        raise InvalidInput('the body is {"device": ..., "action": "start" | "stop"}', {})
    key = _bearer(request)
    device_id = body.get("device")
    out = await database(request).run(
        lambda conn: usecase.mark(
            conn,
            key=key,
            device_id=device_id if isinstance(device_id, str) else None,
            kind=str(body.get("action", "")),
            at=body.get("at"),
            settings=patrol(),
        )
    )
    return Response(orjson.dumps(out), media_type="application/json")


class KeyedFeeds:
    """Refuses anonymous callers on the live-position collections of ``/ogc`` (``team_positions``,
    ``patrol_tracks``) even when JOINTGRID_PUBLIC_FEEDS opens the other feeds: they are live
    positions of police and patrol teams. Credentials that are present are checked by the
    feed's own rule (``api.access``); this only refuses their absence."""

    def __init__(self, app: Any) -> None:
        self.app = app
        names = "|".join(sorted(keyed())) or "(?!)"
        self.paths = re.compile(rf"^/ogc/collections/({names})(/|$)")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.paths.match(scope.get("path", "")):
            headers = {k.lower(): v for k, v in scope.get("headers", [])}
            cookie = headers.get(b"cookie", b"").decode("latin-1")
            if not headers.get(b"authorization") and f"{SESSION_COOKIE}=" not in cookie:
                response = errors.render(
                    "ogc",
                    401,
                    "unauthenticated",
                    "live team positions and tracks need an API key, whatever the feed settings",
                    {"hint": "send Authorization: Bearer <key>"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install(app: Any) -> None:
    """The device routes, and the guard of the live-position feeds."""
    from api.routes import patrols

    app.include_router(router)
    app.include_router(patrols.router)
    app.add_middleware(KeyedFeeds)
