"""Security headers on every answer, set once here (an ASGI middleware).

- ``Content-Security-Policy`` on an HTML document: scripts and style sheets from this server
  only, and inline ones only with this response's nonce (``request.state.csp_nonce``, a fresh
  random value per request; templates put it on their ``<script>`` and ``<style>`` tags). No
  ``'unsafe-inline'``. ``frame-ancestors 'none'`` (and ``X-Frame-Options: DENY`` for older
  browsers): no page can be framed. A configured base-map tile server (``JOINTGRID_TILES_URL``)
  is allowed for images.
  A policy governs only the document (or worker) its response creates: on data, style sheets
  and images it has nothing to allow, so they get the strictest one, ``default-src 'none';
  frame-ancestors 'none'`` (a JSON answer or an SVG opened as a page runs nothing and loads
  nothing). A script may become a worker (the report page's service worker), whose own fetches
  its policy governs: ``default-src 'self'; frame-ancestors 'none'``. Some 400 bytes less on
  every answer that is not a page, which a phone on a slow link notices.
- A ``304 Not Modified`` carries no policy: it has no body, and the browser keeps the headers
  stored with the answer it revalidates (RFC 9111, section 4.3.4).
- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``.
- ``Cache-Control: no-store`` on every answer that may carry reporter identity or contacts (the
  case API, the map's case data and popups, the pages), and on any other answer that sets no
  caching of its own; the browser libraries (``/assets``, ``/static``) and the feeds keep theirs.

A hand-written ASGI middleware rather than a library (e.g. ``secure``): the nonce must be made
per request before the handler runs and be readable by it, which those libraries do not do.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.settings import AccessSettings
from gis.errors import UntrustedHost

# Answers under these paths may carry reporter identity or contacts: never stored by a cache,
# unless the handler chose ``private`` caching itself (the map's layers: public geometry, a
# grid worker's own side's grids; the inbox's picker lists).
PRIVATE_PATHS = re.compile(
    r"^/(api/v1/incidents|api/v1/stats|map(/data/incidents|/data/heat|/popup)?"
    r"|report|dashboard|cases|login|logout)(/|$)"
)
CACHEABLE_PREFIXES = ("/assets/", "/static/")


def _tile_origin(tiles_url: str | None) -> str | None:
    """The origin of the tile URL template (``https://t{s}.example/{z}/{x}/{y}.png``)."""
    if not tiles_url:
        return None
    parts = urlsplit(tiles_url.replace("{s}", "a"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = re.sub(r"^a\.", "*.", parts.netloc) if "{s}." in tiles_url else parts.netloc
    return f"{parts.scheme}://{host}"


# The policies of answers that are not HTML documents (see the module's docstring).
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'"
SCRIPT_POLICY = "default-src 'self'; frame-ancestors 'none'"
_DOCUMENT_TYPES = ("text/html", "application/xhtml+xml")
_SCRIPT_TYPES = ("text/javascript", "application/javascript")


def policy_for(content_type: str, nonce: str, *, tiles_origin: str | None = None) -> str:
    """The Content-Security-Policy of an answer of ``content_type``."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in _DOCUMENT_TYPES:
        return policy(nonce, tiles_origin=tiles_origin)
    return SCRIPT_POLICY if kind in _SCRIPT_TYPES else DATA_POLICY


def policy(nonce: str, *, tiles_origin: str | None = None) -> str:
    """The Content-Security-Policy of an HTML page."""
    img = "'self' data: blob:" + (f" {tiles_origin}" if tiles_origin else "")
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            f"style-src 'self' 'nonce-{nonce}'",
            f"img-src {img}",
            "font-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self'",
            "manifest-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


class SecurityHeaders:
    """Adds the headers above to every HTTP answer; puts the nonce in ``request.state``."""

    def __init__(self, app: ASGIApp, *, tiles_url: str | None = None) -> None:
        self.app = app
        self.tiles_origin = _tile_origin(tiles_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["csp_nonce"] = nonce
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # A response that sets a stricter policy of its own keeps it (a photo is served
                # with `default-src 'none'; sandbox`: an image that is no document). A 304 has
                # none: the revalidated answer keeps the one stored with it.
                if message["status"] != 304 and "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = policy_for(
                        headers.get("content-type", ""), nonce, tiles_origin=self.tiles_origin
                    )
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "same-origin"
                # An answer that chose `private` caching itself (no identity, no contacts) keeps
                # it; everything else here is no-store.
                own = headers.get("cache-control", "")
                if (PRIVATE_PATHS.match(path) and "private" not in own) or (
                    not own and not path.startswith(CACHEABLE_PREFIXES)
                ):
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def public_base(request: Any) -> str:
    """The base of every absolute link in an answer (no trailing slash).

    ``JOINTGRID_PUBLIC_BASE_URL`` when set; else the request's own scheme and Host, but only
    for a trusted host (``JOINTGRID_TRUSTED_HOSTS``): a forged Host never reaches a link.
    """
    access: AccessSettings = request.app.state.access
    if access.public_base_url:
        return access.public_base_url.rstrip("/")
    host = request.headers.get("host", "")
    name = urlsplit(f"//{host}").hostname if host else None
    if not name or name.lower() not in access.trusted():
        raise UntrustedHost(
            "this server does not answer for that Host; use its own address "
            "(or set JOINTGRID_PUBLIC_BASE_URL / JOINTGRID_TRUSTED_HOSTS)",
            {"header": "Host"},  # neither the Host sent nor the trusted names are echoed
        )
    return str(request.base_url).rstrip("/")


def nonce_of(request: Any) -> str:
    """This response's CSP nonce (set by ``SecurityHeaders``; empty outside it)."""
    return str(getattr(request.state, "csp_nonce", ""))


_TAG = re.compile(r"<(script|style)(?=[\s>])(?![^>]*\snonce=)", re.IGNORECASE)


def add_nonce(html: str, nonce: str) -> str:
    """Put ``nonce`` on every ``<script>`` and ``<style>`` tag of HTML that we generate but
    whose templates take no nonce (folium's page). Only for markup built by our own code from
    trusted templates, where every value is escaped (folium writes data with ``tojson``):
    applied to markup that echoes input, it would bless an injected script.
    """
    return _TAG.sub(lambda m: f'<{m.group(1)} nonce="{nonce}"', html)
