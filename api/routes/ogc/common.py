"""What the feed's modules share: media types, conformance, the error shape and route class,
and small helpers for links, JSON answers and the query string."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from api import errors
from api.security import public_base
from gis import errors as e
from gis.catalogue import Catalogue
from layers.errors import Unavailable
from layers.registry import LayerSpec

log = logging.getLogger("jointgrid")

PREFIX = "/ogc"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
COORDS = ("wgs84", "gcj02", "bd09")

GEOJSON = "application/geo+json"
JSON = "application/json"
HTML = "text/html"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
SCHEMA = "application/schema+json"

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
]


# -- errors ------------------------------------------------------------------------------


def ogc_error(exc: e.DomainError) -> Response:
    """The one /ogc error shape; 422 in the global table is 400 here, as OGC API requires."""
    status = errors.status_for(exc)
    retry = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Unavailable) else None
    return error_response(
        400 if status == 422 else status, exc.code, exc.message, exc.detail, retry
    )


def error_response(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> Response:
    """The OGC face's error body (one table of faces: ``api.errors``)."""
    return errors.render("ogc", status, code, message, detail, headers)


class OgcRoute(APIRoute):
    """Answers domain errors raised by an /ogc handler in the OGC shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except e.DomainError as exc:
                return ogc_error(exc)
            except Exception:  # a bug: log it, and answer in the same shape as every error
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                return errors.render_bug(request.url.path)

        return run


# -- small helpers -----------------------------------------------------------------------


def base_url(request: Request) -> str:
    return public_base(request) + PREFIX  # never the Host header as sent (api.security)


def json_response(
    obj: Any, media_type: str = JSON, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(obj, default=default),
        media_type=media_type,
        headers={"Cache-Control": "no-cache", **(headers or {})},
    )


def default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return rfc3339(obj)
    raise TypeError(type(obj).__name__)


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def link(href: str, rel: str, type_: str, title: str | None = None) -> dict[str, str]:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def check_params(request: Request, allowed: set[str] | tuple[str, ...]) -> dict[str, str]:
    """The query parameters as a dict; unknown or repeated ones are a 400, as OGC requires."""
    seen: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise e.InvalidInput(
                f"unknown query parameter {name[:60]!r}", {"allowed": sorted(allowed)}
            )
        if name in seen:
            raise e.InvalidInput(f"the query parameter {name!r} is given twice", {name: value[:60]})
        seen[name] = value
    return seen


def wants_html(request: Request, f: str | None) -> bool:
    if f is not None:
        if f not in ("json", "html"):
            raise e.InvalidInput("f must be json or html", {"f": f[:30]})
        return f == "html"
    accept = request.headers.get("accept", "")
    first = accept.split(",")[0].split(";")[0].strip().lower()
    return first == HTML


def layer_spec(collection_id: str, shown: Iterable[LayerSpec]) -> LayerSpec:
    """The collection ``collection_id`` among those ``shown`` to the caller; else a 404 that
    lists only those (a collection the caller may not read is not named)."""
    ids = {s.id: s for s in shown}
    spec = ids.get(collection_id)
    if spec is None:
        raise e.NotFound(f"no collection {collection_id[:60]!r}", {"collections": sorted(ids)})
    return spec


def sensitive_of(catalogue: Catalogue) -> frozenset[str]:
    return frozenset(catalogue.sensitive_categories)
