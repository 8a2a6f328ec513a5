"""Compression of what the pages load: the page, its scripts, styles and map layers.

A phone on a 50 KB/s link waits about a second for every 50 KB, and Leaflet alone is 150 KB;
gzip takes that to about a third. The feeds and the API are left as they are: their clients
and benchmarks choose for themselves, and the feeds stream.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware.gzip import GZipMiddleware

# Paths whose answers are compressed (when the browser accepts gzip).
PAGE_PREFIXES = ("/static/", "/assets/", "/i18n/", "/map/data/layers/", "/report", "/dashboard")


class PageGZip:
    """starlette's GZipMiddleware, applied only to the pages' own paths."""

    def __init__(self, app: Any, minimum_size: int = 800) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(PAGE_PREFIXES):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
