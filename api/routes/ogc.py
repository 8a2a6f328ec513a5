"""The OGC API - Features feed under ``/ogc``: Part 1 (Core, GeoJSON, HTML, OpenAPI 3.0),
Part 2 (CRS84 only), Part 3 (queryables, CQL2 filters).

The collections are the layers of ``layers.registry.REGISTRY``. Items are built and streamed by
PostGIS (``layers.features``): the handler reads a page's fingerprint, answers 304 when the
client already has it, and otherwise streams the FeatureCollection from a pooled connection
that the response owns until its last byte (or the client's disconnect).

OGC wants 400, not 422, for a bad or unknown query parameter, and one body shape for every
error; the route class below maps the domain errors through ``api.errors`` (the one table) and
answers ``{"code", "description", "message", "detail"}`` with 400 where the table says 422.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import logging
import math
import threading
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import anyio
import orjson
import psycopg
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from api import errors, params
from api.access import ALL_ROLES, SESSION_COOKIE, allow
from api.deps import database, get_catalogue, get_read_conn
from api.security import public_base
from gis import cql
from gis import errors as e
from gis.catalogue import Catalogue
from layers import features
from layers.db import Lease, begin_snapshot
from layers.registry import REGISTRY, LayerSpec

log = logging.getLogger("jointgrid")

PREFIX = "/ogc"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
LIMIT_DEFAULT = 100
LIMIT_MAX = 10_000
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

# Parameters of the items operation besides the collection's properties.
ITEMS_PARAMS = (
    "f",
    "limit",
    "bbox",
    "bbox-crs",
    "datetime",
    "filter",
    "filter-lang",
    "filter-crs",
    "crs",
    "coords",
    "cursor",
)
SYNC_PARAM = "updated_since"  # only on collections with an updated_at column


# -- errors ------------------------------------------------------------------------------


def ogc_error(exc: e.DomainError) -> Response:
    """The one /ogc error shape; 422 in the global table is 400 here, as OGC API requires."""
    status = errors.status_for(exc)
    retry = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, e.Unavailable) else None
    return _error(400 if status == 422 else status, exc.code, exc.message, exc.detail, retry)


def _error(
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


# The feeds' access rule, for every route under /ogc: any key, and anonymous callers when
# JOINTGRID_PUBLIC_FEEDS=true. What is shown is always the redacted public view.
router = APIRouter(
    prefix=PREFIX,
    route_class=OgcRoute,
    include_in_schema=False,
    dependencies=[allow(*ALL_ROLES, public_feed=True)],
)


# -- small helpers -----------------------------------------------------------------------


def _base(request: Request) -> str:
    return public_base(request) + PREFIX  # never the Host header as sent (api.security)


def _json(obj: Any, media_type: str = JSON, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(obj, default=_default),
        media_type=media_type,
        headers={"Cache-Control": "no-cache", **(headers or {})},
    )


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return _rfc3339(obj)
    raise TypeError(type(obj).__name__)


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _link(href: str, rel: str, type_: str, title: str | None = None) -> dict[str, str]:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def _check_params(request: Request, allowed: set[str] | tuple[str, ...]) -> dict[str, str]:
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


def _wants_html(request: Request, f: str | None) -> bool:
    if f is not None:
        if f not in ("json", "html"):
            raise e.InvalidInput("f must be json or html", {"f": f[:30]})
        return f == "html"
    accept = request.headers.get("accept", "")
    first = accept.split(",")[0].split(";")[0].strip().lower()
    return first == HTML


def _shown(request: Request) -> list[LayerSpec]:
    """The collections this caller may know of: those that need a key (live positions) only
    with credentials (checked by the router's rule; ``api.routes.positions.KeyedFeeds``
    refuses anonymous requests for them)."""
    anonymous = not request.headers.get("authorization") and SESSION_COOKIE not in request.cookies
    return [s for s in REGISTRY.values() if not (anonymous and s.keyed)]


def _spec(collection_id: str) -> LayerSpec:
    spec = REGISTRY.get(collection_id)
    if spec is None:
        raise e.NotFound(f"no collection {collection_id[:60]!r}", {"collections": sorted(REGISTRY)})
    return spec


def _sensitive(catalogue: Catalogue) -> frozenset[str]:
    return frozenset(catalogue.sensitive_categories)


def _page_html(title: str, body: str, links: list[dict[str, str]]) -> Response:
    nav = " · ".join(
        f'<a href="{html.escape(ln["href"])}">{html.escape(ln.get("title") or ln["rel"])}</a>'
        for ln in links
        if ln["rel"] in ("self", "alternate", "next", "prev", "collection", "data", "items")
        or ln["rel"].startswith("service")
    )
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        # a style sheet, not a <style>: the Content-Security-Policy admits no inline style
        '<link rel="stylesheet" href="/static/ogc.css"></head><body>'
        f"<p>{nav}</p><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return Response(
        page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return orjson.dumps(v, default=_default).decode()


# -- landing, conformance, API -----------------------------------------------------------


def _landing_links(base: str) -> list[dict[str, str]]:
    return [
        _link(f"{base}/", "self", JSON, "this document"),
        _link(f"{base}/?f=html", "alternate", HTML, "this document as HTML"),
        _link(f"{base}/api", "service-desc", OPENAPI, "the API definition (OpenAPI 3.0)"),
        _link(f"{base}/api?f=html", "service-doc", HTML, "the API documentation"),
        _link(f"{base}/conformance", "conformance", JSON, "conformance classes"),
        _link(f"{base}/collections", "data", JSON, "the collections"),
    ]


@router.get("")
@router.get("/")
def landing(request: Request) -> Response:
    q = _check_params(request, {"f"})
    base = _base(request)
    links = _landing_links(base)
    doc: dict[str, Any] = {
        "title": "JointGrid feeds",
        "description": "Governance layers and public incidents along the Anju (510904) - "
        "Tongnan (500152) border, as OGC API - Features.",
        "links": links,
    }
    if _wants_html(request, q.get("f")):
        items = "".join(
            f'<li><a href="{base}/collections/{html.escape(cid)}">{html.escape(s.title)}</a>'
            f" — {html.escape(s.description)}</li>"
            for cid, s in ((x.id, x) for x in _shown(request))
        )
        return _page_html(
            doc["title"], f"<p>{html.escape(doc['description'])}</p><ul>{items}</ul>", links
        )
    return _json(doc)


@router.get("/conformance")
def conformance(request: Request) -> Response:
    q = _check_params(request, {"f"})
    base = _base(request)
    links = [
        _link(f"{base}/conformance", "self", JSON, "this document"),
        _link(f"{base}/conformance?f=html", "alternate", HTML, "this document as HTML"),
    ]
    if _wants_html(request, q.get("f")):
        body = (
            "<ul>"
            + "".join(f"<li><code>{html.escape(c)}</code></li>" for c in CONFORMANCE)
            + "</ul>"
        )
        return _page_html("Conformance", body, links)
    return _json({"conformsTo": CONFORMANCE, "links": links})


@router.get("/api")
def api_document(
    request: Request,
    conn: psycopg.Connection[Any] = Depends(get_read_conn),
) -> Response:
    q = _check_params(request, {"f"})
    base = _base(request)
    colls = [features.describe(conn, s) for s in _shown(request)]
    doc = openapi_document(base, colls)
    if _wants_html(request, q.get("f")):
        return _page_html("JointGrid feeds: the API", _api_html(doc), _landing_links(base))
    return _json(doc, media_type=OPENAPI)


# -- collections -------------------------------------------------------------------------


def _collection_doc(
    base: str, coll: features.Collection, conn: psycopg.Connection[Any], sensitive: frozenset[str]
) -> dict[str, Any]:
    spec = coll.spec
    box, (t0, t1) = features.extent(conn, coll, sensitive=sensitive)
    url = f"{base}/collections/{spec.id}"
    extent: dict[str, Any] = {}
    if box is not None:
        extent["spatial"] = {"bbox": [list(box)], "crs": CRS84}
    if spec.temporal:
        extent["temporal"] = {
            "interval": [[_rfc3339(t0) if t0 else None, _rfc3339(t1) if t1 else None]],
            "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian",
        }
    return {
        "id": spec.id,
        "title": spec.title,
        "description": spec.description,
        "itemType": "feature",
        "crs": [CRS84],
        "storageCrs": CRS84,
        "extent": extent,
        "links": [
            _link(url, "self", JSON, "this collection"),
            _link(f"{url}?f=html", "alternate", HTML, "this collection as HTML"),
            _link(f"{url}/items", "items", GEOJSON, "the features"),
            _link(f"{url}/items?f=html", "items", HTML, "the features as HTML"),
            _link(
                f"{url}/queryables",
                "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                SCHEMA,
                "queryables",
            ),
            _link(f"{url}/queryables", "queryables", SCHEMA, "queryables"),
        ],
    }


@router.get("/collections")
def collections(
    request: Request,
    conn: psycopg.Connection[Any] = Depends(get_read_conn),
    catalogue: Catalogue = Depends(get_catalogue),
) -> Response:
    q = _check_params(request, {"f"})
    base = _base(request)
    sensitive = _sensitive(catalogue)
    docs = [
        _collection_doc(base, features.describe(conn, s), conn, sensitive) for s in _shown(request)
    ]
    links = [
        _link(f"{base}/collections", "self", JSON, "this document"),
        _link(f"{base}/collections?f=html", "alternate", HTML, "this document as HTML"),
    ]
    if _wants_html(request, q.get("f")):
        rows = [{"id": d["id"], "title": d["title"], "description": d["description"]} for d in docs]
        body = _table(rows, ["id", "title", "description"]).replace("<td>", "<td>", 1)
        for d in docs:
            body = body.replace(
                f"<td>{html.escape(d['id'])}</td>",
                f'<td><a href="{base}/collections/{html.escape(d["id"])}?f=html">{html.escape(d["id"])}</a></td>',
                1,
            )
        return _page_html("Collections", body, links)
    return _json({"links": links, "crs": [CRS84], "collections": docs})


@router.get("/collections/{collection_id}")
def collection(
    collection_id: str,
    request: Request,
    conn: psycopg.Connection[Any] = Depends(get_read_conn),
    catalogue: Catalogue = Depends(get_catalogue),
) -> Response:
    spec = _spec(collection_id)
    q = _check_params(request, {"f"})
    base = _base(request)
    doc = _collection_doc(base, features.describe(conn, spec), conn, _sensitive(catalogue))
    if _wants_html(request, q.get("f")):
        ext = doc["extent"]
        body = (
            f"<p>{html.escape(spec.description)}</p>"
            f"<p>Extent: <code>{html.escape(_cell(ext))}</code></p>"
            f'<p><a href="{base}/collections/{spec.id}/items?f=html">Browse the features</a></p>'
        )
        return _page_html(spec.title, body, doc["links"])
    return _json(doc)


def _queryables_schema(base: str, coll: features.Collection) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, kind in coll.kinds.items():
        if kind == "object":
            continue
        props[name] = {"title": name, **_json_schema(kind)}
    props["geometry"] = {
        "title": "geometry",
        "x-ogc-role": "primary-geometry",
        "format": f"geometry-{_geometry_format(coll.spec.geometry_type)}",
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{base}/collections/{coll.spec.id}/queryables",
        "type": "object",
        "title": coll.spec.title,
        "properties": props,
        "additionalProperties": False,
    }


def _json_schema(kind: str) -> dict[str, Any]:
    if kind == "datetime":
        return {"type": "string", "format": "date-time"}
    if kind == "date":
        return {"type": "string", "format": "date"}
    if kind == "array":
        return {"type": "array", "items": {"type": "string"}}
    if kind == "object":
        return {"type": "object"}
    return {"type": kind}


def _geometry_format(geometry_type: str) -> str:
    return {
        "Point": "point",
        "MultiPoint": "multipoint",
        "LineString": "linestring",
        "MultiLineString": "multilinestring",
        "Polygon": "polygon",
        "MultiPolygon": "multipolygon",
    }.get(geometry_type, "any")


@router.get("/collections/{collection_id}/queryables")
def queryables(
    collection_id: str,
    request: Request,
    conn: psycopg.Connection[Any] = Depends(get_read_conn),
) -> Response:
    spec = _spec(collection_id)
    q = _check_params(request, {"f"})
    base = _base(request)
    schema = _queryables_schema(base, features.describe(conn, spec))
    if _wants_html(request, q.get("f")):
        rows = [{"name": k, "schema": v} for k, v in schema["properties"].items()]
        links = [_link(f"{base}/collections/{spec.id}", "collection", JSON, spec.title)]
        return _page_html(f"{spec.title}: queryables", _table(rows, ["name", "schema"]), links)
    return _json(schema, media_type=SCHEMA)


# -- items -------------------------------------------------------------------------------


def _items_params(coll: features.Collection) -> set[str]:
    allowed = set(ITEMS_PARAMS) | set(_property_params(coll))
    if coll.has_updated_at:
        allowed.add(SYNC_PARAM)
    return allowed


def _property_params(coll: features.Collection) -> dict[str, str]:
    """Public properties usable as ``name=value`` filters, with their kind."""
    return {
        name: kind
        for name, kind in coll.kinds.items()
        if kind != "object" and name not in ITEMS_PARAMS and name != SYNC_PARAM
    }


def _limit(text: str | None) -> int:
    if text is None:
        return LIMIT_DEFAULT
    try:
        n = int(text)
    except ValueError:
        raise e.InvalidInput(
            "limit must be a whole number from 1", {"limit": text[:30], "maximum": LIMIT_MAX}
        ) from None
    if n < 1:
        raise e.InvalidInput("limit must be at least 1", {"limit": n, "maximum": LIMIT_MAX})
    return min(n, LIMIT_MAX)  # above the maximum is clamped, as OGC API allows


def _crs(name: str, value: str | None) -> None:
    if value is not None and value.strip() not in (CRS84, "[OGC:CRS84]", "OGC:CRS84"):
        raise e.InvalidInput(f"{name} must be {CRS84}", {name: value[:100], "supported": [CRS84]})


def _bbox(text: str | None) -> tuple[tuple[float, float, float, float], ...]:
    box = params.parse_bbox(text)
    if box is None:
        return ()
    w, s, east, n = box
    if w > east:  # crosses the antimeridian
        return ((w, s, 180.0, n), (-180.0, s, east, n))
    return (box,)


def _property_filter(name: str, kind: str, text: str) -> tuple[str, Any]:
    """Parse ``name=value``: a comma-separated list (any of), an instant or an interval."""
    if kind in ("datetime", "date"):
        v = params.parse_interval(text, name=name)
        return "range", (v, v) if isinstance(v, datetime) else v
    items = [t.strip() for t in text.split(",")]
    if not text or any(t == "" for t in items):
        raise e.InvalidInput(f"{name}: give one value or a comma-separated list", {name: text[:60]})
    if len(items) > 1000:
        raise e.InvalidInput(f"{name}: at most 1,000 values", {})
    if kind == "array":
        return "overlaps", tuple(items)
    if kind == "boolean":
        if text not in ("true", "false"):
            raise e.InvalidInput(f"{name} is true or false", {name: text[:30]})
        return "equals", (text == "true",)
    if kind in ("integer", "number"):
        try:
            nums = [int(t) if kind == "integer" else float(t) for t in items]
        except ValueError:
            raise e.InvalidInput(f"{name} takes {kind} values", {name: text[:60]}) from None
        if not all(math.isfinite(x) for x in nums):
            raise e.InvalidInput(f"{name} takes finite numbers", {name: text[:60]})
        return "equals", tuple(nums)
    return "equals", tuple(items)


def _parse_query(
    q: dict[str, str], coll: features.Collection, sensitive: frozenset[str]
) -> tuple[features.Query, str]:
    """The selection of an items request, and the output coordinate system."""
    _crs("bbox-crs", q.get("bbox-crs"))
    _crs("crs", q.get("crs"))
    _crs("filter-crs", q.get("filter-crs"))
    coords = q.get("coords", "wgs84")
    if coords not in COORDS:
        raise e.InvalidInput("coords must be wgs84, gcj02 or bd09", {"coords": coords[:30]})
    bbox = _bbox(q.get("bbox"))
    instant: datetime | None = None
    interval = None
    if "datetime" in q:
        if coll.spec.temporal is None:
            raise e.InvalidInput(f"{coll.spec.id} has no time to filter on", {})
        v = params.parse_interval(q["datetime"])
        if isinstance(v, datetime):
            instant = v
        else:
            interval = v
    equals: dict[str, tuple[Any, ...]] = {}
    overlaps: dict[str, tuple[str, ...]] = {}
    ranges: dict[str, tuple[datetime | None, datetime | None]] = {}
    for name, kind in _property_params(coll).items():
        if name not in q:
            continue
        how, value = _property_filter(name, kind, q[name])
        if how == "range":
            ranges[name] = value
        elif how == "overlaps":
            overlaps[name] = value
        else:
            equals[name] = value
    node = None
    if "filter" in q:
        lang = q.get("filter-lang", "cql2-text")
        if lang == "cql2-text":
            node = cql.parse_text(q["filter"], coll.queryables)
        elif lang == "cql2-json":
            node = cql.parse_json(q["filter"], coll.queryables)
        else:
            raise e.InvalidInput(
                "filter-lang must be cql2-text or cql2-json", {"filter-lang": lang[:30]}
            )
    elif "filter-lang" in q and q["filter-lang"] not in ("cql2-text", "cql2-json"):
        raise e.InvalidInput("filter-lang must be cql2-text or cql2-json", {})
    updated_since = None
    if SYNC_PARAM in q:
        updated_since = params.parse_time(q[SYNC_PARAM], name=SYNC_PARAM)
        if updated_since is None:
            raise e.InvalidInput(f"{SYNC_PARAM} is empty", {"example": "2026-11-27T08:00:00Z"})
    query = features.Query(
        bbox=bbox,
        interval=interval,
        instant=instant,
        equals=equals,
        overlaps=overlaps,
        ranges=ranges,
        filter=node,
        updated_since=updated_since,
        sensitive=sensitive,
    )
    return query, coords


def _cursor(text: str | None, coll: features.Collection) -> tuple[str, tuple[str, ...]] | None:
    """(direction "n"/"p", key) from a signed cursor (``api.cursors``).

    A cursor carries no count: numberMatched is counted again on every page (the count is
    capped, see ``features.count``), never taken from what a client sends back.
    """
    if text is None:
        return None
    if not text:
        raise e.InvalidCursor("the cursor is empty; follow the `next` link as given", {})
    values = params.decode_cursor(text, size=len(coll.page_key) + 1)
    assert values is not None
    direction, *key = values
    if direction not in ("n", "p"):
        raise e.InvalidCursor(
            "the cursor is not one this server made; follow the `next` link as given", {}
        )
    return direction, tuple(key)


class _FeatureStream(StreamingResponse):
    """Streams blocks made by a reader that stays up to READ_AHEAD blocks ahead of the socket,
    so PostgreSQL keeps producing while earlier blocks are sent. The reader runs on the
    database's threads (``Lease.submit``), and the lease (its connection and permit) goes back
    when the response ends, however it ends: a client that leaves mid-page gets its query
    cancelled and the connection closed, never reused."""

    READ_AHEAD = 4

    def __init__(self, lease: Lease, chunks: Iterator[bytes | memoryview], **kwargs: Any) -> None:
        self.lease = lease
        self._chunks = chunks
        self._stop = threading.Event()
        self._slots = threading.Semaphore(self.READ_AHEAD)
        self._reader: asyncio.Future[None] | None = None
        super().__init__(self._body(), **kwargs)

    async def _body(self) -> Any:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def read(_conn: Any) -> None:
            try:
                for chunk in self._chunks:
                    self._slots.acquire()
                    if self._stop.is_set():
                        return
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as exc:  # handed to the response, which ends the stream
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        self._reader = self.lease.submit(read)
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            self._slots.release()
            yield item

    async def _finish(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            self._stop.set()
            for _ in range(self.READ_AHEAD + 1):
                self._slots.release()
            self.lease.cancel()  # the reader stops at its next row
            await asyncio.wait([reader], timeout=30)
        if reader is None or reader.done():
            with contextlib.suppress(Exception):  # the lease deals with the connection anyway
                close = getattr(self._chunks, "close", None)
                if close is not None:
                    await self.lease.run(lambda _c: close())
        await self.lease.release()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish()


def _etag(*parts: Any) -> str:
    digest = hashlib.sha256(orjson.dumps(parts, default=_default)).hexdigest()[:32]
    return f'W/"{digest}"'


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == ours for t in header.split(","))


def _http_date(t: datetime | None) -> dict[str, str]:
    if t is None:
        return {}
    return {"Last-Modified": format_datetime(t.astimezone(UTC), usegmt=True)}


@router.get("/collections/{collection_id}/items")
async def items(
    collection_id: str,
    request: Request,
    catalogue: Catalogue = Depends(get_catalogue),
) -> Response:
    spec = _spec(collection_id)
    # A lease on the read pool, waited for on the event loop (never on a thread), kept by the
    # streaming response until its last byte, and given back by it.
    lease = await database(request).read.acquire()
    try:
        answer, stream = await lease.run(_items, spec, request, _sensitive(catalogue))
    except BaseException:
        await lease.release(failed=True)
        raise
    if stream is None:
        await lease.release()
        assert answer is not None
        return answer
    chunks, headers = stream
    return _FeatureStream(lease, chunks, media_type=GEOJSON, headers=headers)


def _items(
    conn: psycopg.Connection[Any],
    spec: LayerSpec,
    request: Request,
    sensitive: frozenset[str],
) -> tuple[Response, None] | tuple[None, tuple[Iterator[bytes | memoryview], dict[str, str]]]:
    """One items page, on the lease's thread: a finished answer (304, HTML), or the blocks
    of the FeatureCollection to stream and their headers. The page and its count are read in
    one snapshot, which the stream keeps (the transaction ends when the lease goes back)."""
    begin_snapshot(conn)
    features.prepare(conn)
    coll = features.describe(conn, spec)
    q = _check_params(request, _items_params(coll))
    html_out = _wants_html(request, q.get("f"))
    limit = _limit(q.get("limit"))
    query, coords = _parse_query(q, coll, sensitive)
    cursor = _cursor(q.get("cursor"), coll)
    matched, set_modified = features.count(conn, coll, query)
    after = before = None
    if cursor is not None:
        if cursor[0] == "n":
            after = cursor[1]
        else:
            before = cursor[1]
    pg = features.page(conn, coll, query, limit=limit, after=after, before=before)

    base = _base(request)
    url = f"{base}/collections/{spec.id}/items"
    keep = {k: v for k, v in q.items() if k not in ("cursor", "f")}

    def href(extra: dict[str, str], f: str | None = None) -> str:
        qs = {**keep, **extra}
        if f:
            qs["f"] = f
        return url + ("?" + urlencode(qs) if qs else "")

    here = {"cursor": q["cursor"]} if "cursor" in q else {}
    links = [
        _link(href(here), "self", GEOJSON, "this page"),
        _link(href(here, "html"), "alternate", HTML, "this page as HTML"),
        _link(f"{base}/collections/{spec.id}", "collection", JSON, spec.title),
    ]
    has_next = pg.more if before is None else pg.last_key is not None
    has_prev = (after is not None and pg.first_key is not None) or (before is not None and pg.more)
    if has_next and pg.last_key is not None:
        nxt = params.encode_cursor("n", *pg.last_key)
        links.append(_link(href({"cursor": nxt}), "next", GEOJSON, "next page"))
    if has_prev and pg.first_key is not None:
        prv = params.encode_cursor("p", *pg.first_key)
        links.append(_link(href({"cursor": prv}), "prev", GEOJSON, "previous page"))

    etag = _etag(
        "items/1",
        spec.id,
        sorted(q.items()),
        matched,
        _rfc3339(set_modified) if set_modified else None,
        pg.returned,
        pg.more,
        pg.first_key,
        pg.last_key,
        pg.modified,
    )
    modified = set_modified or pg.modified
    headers = {"ETag": etag, "Cache-Control": "no-cache", **_http_date(modified)}
    if coords == "wgs84":
        headers["Content-Crs"] = f"<{CRS84}>"
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers), None

    if html_out:
        rows = features.rows(conn, coll, query, pg)
        table = _table(
            [{"id": r.get("id"), **(r.get("properties") or {})} for r in rows],
            ["id", *[c for c in spec.public if c != "id"]],
        )
        summary = (
            f"<p>{pg.returned} feature(s)"
            + (f" of {matched} matched" if matched is not None else "")
            + "; geometries are in the GeoJSON view.</p>"
        )
        return _page_html(f"{spec.title}: features", summary + table, links), None

    head: dict[str, Any] = {"type": "FeatureCollection"}
    if matched is not None:
        head["numberMatched"] = matched
    head["numberReturned"] = pg.returned
    head["timeStamp"] = _rfc3339(datetime.now(UTC))
    head["links"] = links
    opening = orjson.dumps(head)[:-1] + b',"features":['

    def chunks() -> Iterator[bytes | memoryview]:
        yield opening
        if coords == "wgs84":
            yield from features.stream(conn, coll, query, pg)
        else:
            yield from features.stream_converted(conn, coll, query, pg, crs=coords)
        yield b"]}"

    return None, (chunks(), headers)


@router.get("/collections/{collection_id}/items/{feature_id}")
def item(
    collection_id: str,
    feature_id: str,
    request: Request,
    conn: psycopg.Connection[Any] = Depends(get_read_conn),
    catalogue: Catalogue = Depends(get_catalogue),
) -> Response:
    spec = _spec(collection_id)
    q = _check_params(request, {"f", "crs", "coords"})
    _crs("crs", q.get("crs"))
    coords = q.get("coords", "wgs84")
    if coords not in COORDS:
        raise e.InvalidInput("coords must be wgs84, gcj02 or bd09", {"coords": coords[:30]})
    coll = features.describe(conn, spec)
    text = features.feature(conn, coll, feature_id, sensitive=_sensitive(catalogue), crs=coords)
    base = _base(request)
    url = f"{base}/collections/{spec.id}/items/{feature_id}"
    extra = "" if coords == "wgs84" else f"?coords={coords}"
    links = [
        _link(url + extra, "self", GEOJSON, "this feature"),
        _link(f"{url}?f=html", "alternate", HTML, "this feature as HTML"),
        _link(f"{base}/collections/{spec.id}", "collection", JSON, spec.title),
    ]
    if _wants_html(request, q.get("f")):
        feat = orjson.loads(text)
        rows = [{"property": k, "value": v} for k, v in (feat.get("properties") or {}).items()]
        rows.append({"property": "geometry", "value": feat.get("geometry")})
        return _page_html(f"{spec.title}: {feature_id}", _table(rows, ["property", "value"]), links)
    body = text[:-1] + ',"links":' + orjson.dumps(links).decode() + "}"
    headers = {"ETag": _etag("item/1", spec.id, coords, text), "Cache-Control": "no-cache"}
    if coords == "wgs84":
        headers["Content-Crs"] = f"<{CRS84}>"
    if _matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=GEOJSON, headers=headers)


# -- everything else under /ogc ----------------------------------------------------------


@router.api_route(
    "/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
)
def not_here(rest: str, request: Request) -> Response:
    path = f"{PREFIX}/{rest}"
    for r in router.routes:
        if isinstance(r, APIRoute) and r.endpoint is not not_here and r.path_regex.match(path):
            message = f"{request.method} is not allowed here; use GET"
            return _error(405, "method_not_allowed", message, None, {"Allow": "GET"})
    raise e.NotFound(f"no resource {path[:80]}", {"see": f"{PREFIX}/api"})


def install(app: FastAPI) -> None:
    """Register the feed's routes on the app."""
    app.include_router(router)


# -- the OpenAPI 3.0 document ------------------------------------------------------------
# Built by hand: FastAPI writes OpenAPI 3.1, while OGC API clients (GDAL, QGIS, ogctests) read
# 3.0. Self-contained (local $refs only), and every collection's paths are written out with
# their own property parameters, which is how GDAL and QGIS learn what they can push to the
# server.


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _content(schema: dict[str, Any], *types: str) -> dict[str, Any]:
    return {t: {"schema": schema if t != HTML else {"type": "string"}} for t in types}


def _responses(
    ok: dict[str, Any], *, not_found: bool = False, not_modified: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {"200": ok, "400": _ref("responses", "BadRequest")}
    if not_found:
        out["404"] = _ref("responses", "NotFound")
    if not_modified:
        out["304"] = {"description": "Not modified: the ETag sent in If-None-Match still holds"}
    out["500"] = _ref("responses", "ServerError")
    out["503"] = _ref("responses", "Unavailable")
    return out


def _param_schema(kind: str) -> dict[str, Any]:
    if kind in ("string", "array"):
        return {"type": "array", "items": {"type": "string"}, "minItems": 1}
    if kind == "integer":
        return {"type": "array", "items": {"type": "integer"}, "minItems": 1}
    if kind == "number":
        return {"type": "array", "items": {"type": "number"}, "minItems": 1}
    if kind == "boolean":
        return {"type": "boolean"}
    return {"type": "string"}  # datetime, date: an instant or an interval


def _property_parameter(name: str, kind: str) -> dict[str, Any]:
    how = {
        "array": "features whose list shares a value with these (comma-separated)",
        "boolean": "true or false",
        "datetime": "an RFC 3339 instant, or an interval start/end with .. for an open end",
        "date": "a date, or an interval start/end with .. for an open end",
    }.get(kind, "any of these values (comma-separated)")
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"Filter on the property {name}: {how}.",
        "style": "form",
        "explode": False,
        "schema": _param_schema(kind),
    }


def _items_operation(coll: features.Collection) -> dict[str, Any]:
    spec = coll.spec
    parameters: list[dict[str, Any]] = [
        _ref("parameters", "f"),
        _ref("parameters", "limit"),
        _ref("parameters", "bbox"),
        _ref("parameters", "bbox-crs"),
        _ref("parameters", "datetime"),
        _ref("parameters", "crs"),
        _ref("parameters", "filter"),
        _ref("parameters", "filter-lang"),
        _ref("parameters", "filter-crs"),
        _ref("parameters", "coords"),
        _ref("parameters", "cursor"),
    ]
    if coll.has_updated_at:
        parameters.append(_ref("parameters", SYNC_PARAM))
    parameters.extend(_property_parameter(n, k) for n, k in _property_params(coll).items())
    return {
        "get": {
            "tags": ["Data"],
            "summary": f"{spec.title}: the features",
            "description": spec.description
            + " Paged by keyset: follow the `next` link. Responses carry an ETag; send it back "
            "in If-None-Match to get 304 when nothing changed.",
            "operationId": f"getFeatures_{spec.id}",
            "parameters": parameters,
            "responses": _responses(
                {
                    "description": "The features (GeoJSON), or an HTML page with f=html",
                    "content": _content(_ref("schemas", "featureCollectionGeoJSON"), GEOJSON, HTML),
                },
                not_found=True,
                not_modified=True,
            ),
        }
    }


def _item_operation(coll: features.Collection) -> dict[str, Any]:
    spec = coll.spec
    return {
        "get": {
            "tags": ["Data"],
            "summary": f"{spec.title}: one feature",
            "operationId": f"getFeature_{spec.id}",
            "parameters": [
                _ref("parameters", "featureId"),
                _ref("parameters", "f"),
                _ref("parameters", "crs"),
                _ref("parameters", "coords"),
            ],
            "responses": _responses(
                {
                    "description": "The feature (GeoJSON), or an HTML page with f=html",
                    "content": _content(_ref("schemas", "featureGeoJSON"), GEOJSON, HTML),
                },
                not_found=True,
                not_modified=True,
            ),
        }
    }


def _simple(
    summary: str, op: str, schema: str, media: str, *, not_found: bool = False
) -> dict[str, Any]:
    return {
        "get": {
            "tags": ["Capabilities"],
            "summary": summary,
            "operationId": op,
            "parameters": [_ref("parameters", "f")],
            "responses": _responses(
                {"description": summary, "content": _content(_ref("schemas", schema), media, HTML)},
                not_found=not_found,
            ),
        }
    }


def openapi_document(base: str, colls: list[features.Collection]) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of the feed, for the server at ``base``."""
    paths: dict[str, Any] = {
        "/": _simple("The landing page", "getLandingPage", "landingPage", JSON),
        "/conformance": _simple("The conformance classes", "getConformance", "confClasses", JSON),
        "/api": _simple("This API definition", "getAPI", "anyObject", OPENAPI),
        "/collections": _simple("The collections", "getCollections", "collections", JSON),
    }
    for coll in colls:
        cid = coll.spec.id
        paths[f"/collections/{cid}"] = _simple(
            f"The collection {cid}", f"describeCollection_{cid}", "collection", JSON, not_found=True
        )
        paths[f"/collections/{cid}/queryables"] = _simple(
            f"The queryables of {cid}", f"getQueryables_{cid}", "anyObject", SCHEMA, not_found=True
        )
        paths[f"/collections/{cid}/items"] = _items_operation(coll)
        paths[f"/collections/{cid}/items/{{featureId}}"] = _item_operation(coll)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "JointGrid feeds",
            "version": "1.0.0",
            "description": "OGC API - Features (Part 1 Core, GeoJSON, HTML, OpenAPI 3.0; Part 2 "
            "with CRS84; Part 3 queryables and CQL2 filters) for the governance layers and "
            "public incidents of the Anju (510904) - Tongnan (500152) border. Coordinates are "
            "WGS84 longitude/latitude (CRS84); the vendor parameter `coords` returns GCJ-02 or "
            "BD-09 for Chinese map platforms. Public incidents carry no reporter identity or "
            "contacts, and sensitive categories are shown at their grid's centroid.",
            "license": {"name": "MIT"},
        },
        "servers": [{"url": base}],
        "tags": [
            {"name": "Capabilities", "description": "What the service offers"},
            {"name": "Data", "description": "The features"},
        ],
        "paths": paths,
        "components": {
            "parameters": _parameters(),
            "schemas": _schemas(),
            "responses": _error_responses(),
        },
    }


def _parameters() -> dict[str, Any]:
    def query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "style": "form",
            "explode": False,
            "schema": schema,
            **extra,
        }

    crs_schema = {"type": "string", "format": "uri", "enum": [CRS84], "default": CRS84}
    return {
        "f": query(
            "f",
            "The format: json (GeoJSON for features) or html.",
            {"type": "string", "enum": ["json", "html"]},
        ),
        "limit": query(
            "limit",
            f"Features per page, 1 to {LIMIT_MAX} (larger values are clamped to {LIMIT_MAX}).",
            {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": LIMIT_DEFAULT},
        ),
        "bbox": query(
            "bbox",
            "Only features whose geometry intersects this box: west,south,east,north in WGS84 "
            "degrees (six numbers with heights are accepted; a west larger than east crosses "
            "the antimeridian).",
            {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
        ),
        "bbox-crs": query("bbox-crs", "The CRS of bbox: only CRS84.", crs_schema),
        "crs": query("crs", "The CRS of the response: only CRS84 (see also coords).", crs_schema),
        "filter-crs": query(
            "filter-crs", "The CRS of geometry literals in filter: only CRS84.", crs_schema
        ),
        "datetime": query(
            "datetime",
            "The collection's time (its temporal column) is this RFC 3339 instant, or falls in "
            "the interval start/end, where .. (or nothing) leaves an end open: "
            "2026-11-01T00:00:00Z/.. or ../2026-11-30T00:00:00+08:00.",
            {"type": "string"},
        ),
        "filter": query(
            "filter",
            "A CQL2 filter on the queryables: comparisons, AND/OR/NOT, LIKE, BETWEEN, IN, "
            "IS NULL, S_INTERSECTS(geometry, <WKT or BBOX in WGS84>), A_OVERLAPS and "
            "A_CONTAINS on lists.",
            {"type": "string"},
        ),
        "filter-lang": query(
            "filter-lang",
            "The language of filter.",
            {"type": "string", "enum": ["cql2-text", "cql2-json"], "default": "cql2-text"},
        ),
        "coords": query(
            "coords",
            "Vendor parameter: the coordinates of the response. wgs84 (the default, CRS84), "
            "gcj02 (Amap, Tencent and WeChat maps) or bd09 (Baidu maps). Filters and bbox are "
            "always WGS84.",
            {"type": "string", "enum": list(COORDS), "default": "wgs84"},
        ),
        "cursor": query(
            "cursor",
            "An opaque position from a next or prev link; do not make one up.",
            {"type": "string"},
        ),
        SYNC_PARAM: query(
            SYNC_PARAM,
            "Incremental sync: only features changed after this RFC 3339 time (updated_at > "
            "value). Combine with If-None-Match for a cheap 304 when nothing changed.",
            {"type": "string", "format": "date-time"},
        ),
        "featureId": {
            "name": "featureId",
            "in": "path",
            "required": True,
            "description": "The id of a feature.",
            "schema": {"type": "string"},
        },
    }


def _schemas() -> dict[str, Any]:
    link = {
        "type": "object",
        "required": ["href", "rel"],
        "properties": {
            "href": {"type": "string"},
            "rel": {"type": "string"},
            "type": {"type": "string"},
            "title": {"type": "string"},
            "hreflang": {"type": "string"},
        },
    }
    links = {"type": "array", "items": _ref("schemas", "link")}
    geometry = {
        "type": "object",
        "nullable": True,
        "required": ["type"],
        "properties": {"type": {"type": "string"}, "coordinates": {"type": "array", "items": {}}},
    }
    feature = {
        "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "geometry": _ref("schemas", "geometryGeoJSON"),
            "properties": {"type": "object", "nullable": True},
            "links": links,
        },
    }
    return {
        "link": link,
        "anyObject": {"type": "object"},
        "exception": {
            "type": "object",
            "required": ["code", "description"],
            "properties": {
                "code": {"type": "string"},
                "description": {"type": "string"},
                "message": {"type": "string"},
                "detail": {},
            },
        },
        "landingPage": {
            "type": "object",
            "required": ["links"],
            "properties": {
                "title": {"type": "string"},
                "description": {"type": "string"},
                "links": links,
            },
        },
        "confClasses": {
            "type": "object",
            "required": ["conformsTo"],
            "properties": {
                "conformsTo": {"type": "array", "items": {"type": "string"}},
                "links": links,
            },
        },
        "collection": {
            "type": "object",
            "required": ["id", "links"],
            "properties": {
                "id": {"type": "string"},
                "title": {"type": "string"},
                "description": {"type": "string"},
                "links": links,
                "extent": {"type": "object"},
                "itemType": {"type": "string"},
                "crs": {"type": "array", "items": {"type": "string"}},
                "storageCrs": {"type": "string"},
            },
        },
        "collections": {
            "type": "object",
            "required": ["links", "collections"],
            "properties": {
                "links": links,
                "crs": {"type": "array", "items": {"type": "string"}},
                "collections": {"type": "array", "items": _ref("schemas", "collection")},
            },
        },
        "geometryGeoJSON": geometry,
        "featureGeoJSON": feature,
        "featureCollectionGeoJSON": {
            "type": "object",
            "required": ["type", "features"],
            "properties": {
                "type": {"type": "string", "enum": ["FeatureCollection"]},
                "features": {"type": "array", "items": _ref("schemas", "featureGeoJSON")},
                "links": links,
                "timeStamp": {"type": "string", "format": "date-time"},
                "numberMatched": {"type": "integer", "minimum": 0},
                "numberReturned": {"type": "integer", "minimum": 0},
            },
        },
    }


def _error_responses() -> dict[str, Any]:
    def resp(description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {JSON: {"schema": _ref("schemas", "exception")}},
        }

    return {
        "BadRequest": resp("A query parameter is unknown, repeated or invalid"),
        "NotFound": resp("No such collection or feature"),
        "ServerError": resp("An unexpected error (it has been logged)"),
        "Unavailable": resp("The database is not reachable; retry shortly"),
    }


def _api_html(doc: dict[str, Any]) -> str:
    """The API definition as a plain page (service-doc): operations and their parameters."""
    params_by_name = doc["components"]["parameters"]
    parts = [f"<p>{html.escape(doc['info']['description'])}</p>"]
    parts.append(
        f'<p>Machine-readable: <a href="{html.escape(doc["servers"][0]["url"])}/api">'
        "OpenAPI 3.0 (JSON)</a></p>"
    )
    for path, ops in doc["paths"].items():
        op = ops["get"]
        names = []
        for p in op.get("parameters", []):
            if "$ref" in p:
                p = params_by_name[p["$ref"].rsplit("/", 1)[1]]
            names.append(p["name"])
        parts.append(
            f"<h3><code>GET {html.escape(path)}</code></h3><p>{html.escape(op['summary'])}</p>"
            f"<p>Parameters: {html.escape(', '.join(names))}</p>"
        )
    return "".join(parts)
