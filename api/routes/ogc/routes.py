"""The feed's routes: landing page, conformance, API, collections, queryables, items, item.

Items are built and streamed by PostGIS (``layers.features``): the handler reads a page's
fingerprint, answers 304 when the client already has it, and otherwise streams the
FeatureCollection from a pooled connection that the response owns until its last byte (or
the client's disconnect).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from api import params
from api.access import ALL_ROLES, Principal, allow
from api.deps import database, get_catalogue, get_read_conn
from api.routes.ogc import pages
from api.routes.ogc import parameters as p
from api.routes.ogc.common import (
    CONFORMANCE,
    COORDS,
    CRS84,
    GEOJSON,
    HTML,
    JSON,
    OPENAPI,
    PREFIX,
    SCHEMA,
    OgcRoute,
    base_url,
    check_params,
    error_response,
    json_response,
    layer_spec,
    link,
    rfc3339,
    sensitive_of,
    wants_html,
)
from api.routes.ogc.openapi import INFO, openapi_document
from api.routes.ogc.streaming import FeatureStream, etag, http_date, matches
from gis import errors as e
from gis.catalogue import Catalogue
from layers import features
from layers.db import Conn, begin_snapshot
from layers.registry import REGISTRY, LayerSpec

DOC_PARAMS = p.taken_by("doc")
ITEM_PARAMS = p.taken_by("item")

# The feeds' access rule, for every route under /ogc: any key, and anonymous callers when
# JOINTGRID_PUBLIC_FEEDS=true. What is shown is always the redacted public view.
# A route that needs the caller names the same dependency (``who: Principal = FEEDS``):
# FastAPI runs it once per request and hands the route its answer.
FEEDS = allow(*ALL_ROLES, public_feed=True)
router = APIRouter(
    prefix=PREFIX,
    route_class=OgcRoute,
    include_in_schema=False,
    dependencies=[FEEDS],
)


# -- landing, conformance, API -----------------------------------------------------------


def _landing_links(base: str) -> list[dict[str, str]]:
    return [
        link(f"{base}/", "self", JSON, "this document"),
        link(f"{base}/?f=html", "alternate", HTML, "this document as HTML"),
        link(f"{base}/api", "service-desc", OPENAPI, "the API definition (OpenAPI 3.0)"),
        link(f"{base}/api?f=html", "service-doc", HTML, "the API documentation"),
        link(f"{base}/conformance", "conformance", JSON, "conformance classes"),
        link(f"{base}/collections", "data", JSON, "the collections"),
    ]


def _shown(who: Principal) -> list[LayerSpec]:
    """The collections this caller may know of: those that need a key (live positions) only
    to a caller with a key or a session (checked by the router's rule;
    ``api.routes.positions.KeyedFeeds`` refuses anonymous requests for them). Their ids are
    not named to anyone else, not even in a 404's list of collections."""
    return [s for s in REGISTRY.values() if may_know(who, s)]


def may_know(who: Principal, spec: LayerSpec) -> bool:
    """Whether ``who`` may read (and so know of) the collection ``spec``."""
    return not spec.keyed or not who.anonymous


def _spec(collection_id: str, who: Principal) -> LayerSpec:
    """The collection ``collection_id`` for this caller; a 404 listing only those it may read."""
    return layer_spec(collection_id, _shown(who))


@dataclass(frozen=True)
class Asked:
    """The collection a route's path names, as its caller may see it, with the read-pool
    connection to read it on and the catalogue's sensitive fields (redacted in every feed)."""

    spec: LayerSpec
    conn: Conn
    sensitive: frozenset[str]


async def asked_collection(
    collection_id: str,
    conn: Conn = Depends(get_read_conn),
    catalogue: Catalogue = Depends(get_catalogue),
    who: Principal = FEEDS,
) -> Asked:
    """The dependency of the routes under ``/collections/{collection_id}`` that read on a
    pooled connection: a 404 (listing only what the caller may read) for an unknown id."""
    return Asked(_spec(collection_id, who), conn, sensitive_of(catalogue))


@router.get("")
@router.get("/")
def landing(request: Request, who: Principal = FEEDS) -> Response:
    q = check_params(request, DOC_PARAMS)
    base = base_url(request)
    links = _landing_links(base)
    doc: dict[str, Any] = {
        "title": INFO["title"],
        "description": "Governance layers and public incidents along the Anju (510904) - "
        "Tongnan (500152) border, as OGC API - Features.",
        "links": links,
    }
    if wants_html(request, q.get("f")):
        return pages.page(
            "landing",
            doc["title"],
            links,
            description=doc["description"],
            base=base,
            collections=_shown(who),
        )
    return json_response(doc)


@router.get("/conformance")
def conformance(request: Request) -> Response:
    q = check_params(request, DOC_PARAMS)
    base = base_url(request)
    links = [
        link(f"{base}/conformance", "self", JSON, "this document"),
        link(f"{base}/conformance?f=html", "alternate", HTML, "this document as HTML"),
    ]
    if wants_html(request, q.get("f")):
        return pages.page("conformance", "Conformance", links, classes=CONFORMANCE)
    return json_response({"conformsTo": CONFORMANCE, "links": links})


@router.get("/api")
def api_document(
    request: Request,
    conn: Conn = Depends(get_read_conn),
    who: Principal = FEEDS,
) -> Response:
    q = check_params(request, DOC_PARAMS)
    base = base_url(request)
    colls = [features.describe(conn, s) for s in _shown(who)]
    doc = openapi_document(base, colls)
    if wants_html(request, q.get("f")):
        return pages.api_page(doc, _landing_links(base))
    return json_response(doc, media_type=OPENAPI)


# -- collections -------------------------------------------------------------------------


def _collection_doc(
    base: str, coll: features.Collection, conn: Conn, sensitive: frozenset[str]
) -> dict[str, Any]:
    spec = coll.spec
    box, (t0, t1) = features.extent(conn, coll, sensitive=sensitive)
    url = f"{base}/collections/{spec.id}"
    extent: dict[str, Any] = {}
    if box is not None:
        extent["spatial"] = {"bbox": [list(box)], "crs": CRS84}
    if spec.temporal:
        extent["temporal"] = {
            "interval": [[rfc3339(t0) if t0 else None, rfc3339(t1) if t1 else None]],
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
            link(url, "self", JSON, "this collection"),
            link(f"{url}?f=html", "alternate", HTML, "this collection as HTML"),
            link(f"{url}/items", "items", GEOJSON, "the features"),
            link(f"{url}/items?f=html", "items", HTML, "the features as HTML"),
            link(
                f"{url}/queryables",
                "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                SCHEMA,
                "queryables",
            ),
            link(f"{url}/queryables", "queryables", SCHEMA, "queryables"),
        ],
    }


@router.get("/collections")
def collections(
    request: Request,
    conn: Conn = Depends(get_read_conn),
    catalogue: Catalogue = Depends(get_catalogue),
    who: Principal = FEEDS,
) -> Response:
    q = check_params(request, DOC_PARAMS)
    base = base_url(request)
    sensitive = sensitive_of(catalogue)
    docs = [_collection_doc(base, features.describe(conn, s), conn, sensitive) for s in _shown(who)]
    links = [
        link(f"{base}/collections", "self", JSON, "this document"),
        link(f"{base}/collections?f=html", "alternate", HTML, "this document as HTML"),
    ]
    if wants_html(request, q.get("f")):
        return pages.table(
            "Collections",
            links,
            docs,
            ["id", "title", "description"],
            hrefs=[f"{base}/collections/{d['id']}?f=html" for d in docs],
        )
    return json_response({"links": links, "crs": [CRS84], "collections": docs})


@router.get("/collections/{collection_id}")
def collection(request: Request, asked: Asked = Depends(asked_collection)) -> Response:
    spec, conn = asked.spec, asked.conn
    q = check_params(request, DOC_PARAMS)
    base = base_url(request)
    doc = _collection_doc(base, features.describe(conn, spec), conn, asked.sensitive)
    if wants_html(request, q.get("f")):
        return pages.page(
            "collection",
            spec.title,
            doc["links"],
            description=spec.description,
            extent=pages.cell(doc["extent"]),
            items=f"{base}/collections/{spec.id}/items?f=html",
        )
    return json_response(doc)


def _queryables_schema(base: str, coll: features.Collection) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, kind in coll.kinds.items():
        if kind == "object":
            continue
        props[name] = {"title": name, **_json_schema(kind)}
    props["geometry"] = {
        "title": "geometry",
        "x-ogc-role": "primary-geometry",
        "format": f"geometry-{GEOMETRY_FORMATS.get(coll.spec.geometry_type, 'any')}",
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


GEOMETRY_FORMATS = {
    "Point": "point",
    "MultiPoint": "multipoint",
    "LineString": "linestring",
    "MultiLineString": "multilinestring",
    "Polygon": "polygon",
    "MultiPolygon": "multipolygon",
}


@router.get("/collections/{collection_id}/queryables")
def queryables(request: Request, asked: Asked = Depends(asked_collection)) -> Response:
    spec = asked.spec
    q = check_params(request, DOC_PARAMS)
    base = base_url(request)
    schema = _queryables_schema(base, features.describe(asked.conn, spec))
    if wants_html(request, q.get("f")):
        rows = [{"name": k, "schema": v} for k, v in schema["properties"].items()]
        links = [link(f"{base}/collections/{spec.id}", "collection", JSON, spec.title)]
        return pages.table(f"{spec.title}: queryables", links, rows, ["name", "schema"])
    return json_response(schema, media_type=SCHEMA)


# -- items -------------------------------------------------------------------------------


@router.get("/collections/{collection_id}/items")
async def items(
    collection_id: str,
    request: Request,
    catalogue: Catalogue = Depends(get_catalogue),
    who: Principal = FEEDS,
) -> Response:
    spec = _spec(collection_id, who)
    # A lease on the read pool, waited for on the event loop (never on a thread), kept by the
    # streaming response until its last byte, and given back by it.
    lease = await database(request).read.acquire()
    try:
        answer, stream = await lease.run(_items, spec, request, sensitive_of(catalogue))
    except BaseException:
        await lease.release(failed=True)
        raise
    if stream is None:
        await lease.release()
        assert answer is not None
        return answer
    chunks, headers = stream
    return FeatureStream(lease, chunks, media_type=GEOJSON, headers=headers)


def _items(
    conn: Conn,
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
    q = check_params(request, p.items_params(coll))
    html_out = wants_html(request, q.get("f"))
    limit = p.limit_of(q.get("limit"))
    query, coords = p.parse_query(q, coll, sensitive)
    cursor = p.cursor_of(q.get("cursor"), coll)
    matched, set_modified = features.count(conn, coll, query)
    after = before = None
    if cursor is not None:
        if cursor[0] == "n":
            after = cursor[1]
        else:
            before = cursor[1]
    pg = features.page(conn, coll, query, limit=limit, after=after, before=before)
    links = _page_links(base_url(request), spec, q, pg, after=after, before=before)
    tag = etag(
        "items/1",
        spec.id,
        sorted(q.items()),
        matched,
        rfc3339(set_modified) if set_modified else None,
        pg.returned,
        pg.more,
        pg.first_key,
        pg.last_key,
        pg.modified,
    )
    modified = set_modified or pg.modified
    headers = {"ETag": tag, "Cache-Control": "no-cache", **http_date(modified)}
    if coords == "wgs84":
        headers["Content-Crs"] = f"<{CRS84}>"
    if matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers), None

    if html_out:
        rows = features.rows(conn, coll, query, pg)
        summary = (
            f"{pg.returned} feature(s)"
            + (f" of {matched} matched" if matched is not None else "")
            + "; geometries are in the GeoJSON view."
        )
        return pages.table(
            f"{spec.title}: features",
            links,
            [{"id": r.get("id"), **(r.get("properties") or {})} for r in rows],
            ["id", *[c for c in spec.public if c != "id"]],
            summary=summary,
        ), None

    head: dict[str, Any] = {"type": "FeatureCollection"}
    if matched is not None:
        head["numberMatched"] = matched
    head["numberReturned"] = pg.returned
    head["timeStamp"] = rfc3339(datetime.now(UTC))
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


def _page_links(
    base: str,
    spec: LayerSpec,
    q: dict[str, str],
    pg: Any,
    *,
    after: tuple[str, ...] | None,
    before: tuple[str, ...] | None,
) -> list[dict[str, str]]:
    """A page's links: itself, as HTML, its collection, and the next and previous pages."""
    url = f"{base}/collections/{spec.id}/items"
    keep = {k: v for k, v in q.items() if k not in ("cursor", "f")}

    def href(extra: dict[str, str], f: str | None = None) -> str:
        qs = {**keep, **extra}
        if f:
            qs["f"] = f
        return url + ("?" + urlencode(qs) if qs else "")

    here = {"cursor": q["cursor"]} if "cursor" in q else {}
    links = [
        link(href(here), "self", GEOJSON, "this page"),
        link(href(here, "html"), "alternate", HTML, "this page as HTML"),
        link(f"{base}/collections/{spec.id}", "collection", JSON, spec.title),
    ]
    has_next = pg.more if before is None else pg.last_key is not None
    has_prev = (after is not None and pg.first_key is not None) or (before is not None and pg.more)
    if has_next and pg.last_key is not None:
        nxt = params.encode_cursor("n", *pg.last_key)
        links.append(link(href({"cursor": nxt}), "next", GEOJSON, "next page"))
    if has_prev and pg.first_key is not None:
        prv = params.encode_cursor("p", *pg.first_key)
        links.append(link(href({"cursor": prv}), "prev", GEOJSON, "previous page"))
    return links


@router.get("/collections/{collection_id}/items/{feature_id}")
def item(
    feature_id: str,
    request: Request,
    asked: Asked = Depends(asked_collection),
) -> Response:
    spec, conn = asked.spec, asked.conn
    q = check_params(request, ITEM_PARAMS)
    p.check_crs("crs", q.get("crs"))
    coords = q.get("coords", "wgs84")
    if coords not in COORDS:
        raise e.InvalidInput("coords must be wgs84, gcj02 or bd09", {"coords": coords[:30]})
    coll = features.describe(conn, spec)
    text = features.feature(conn, coll, feature_id, sensitive=asked.sensitive, crs=coords)
    base = base_url(request)
    url = f"{base}/collections/{spec.id}/items/{feature_id}"
    extra = "" if coords == "wgs84" else f"?coords={coords}"
    links = [
        link(url + extra, "self", GEOJSON, "this feature"),
        link(f"{url}?f=html", "alternate", HTML, "this feature as HTML"),
        link(f"{base}/collections/{spec.id}", "collection", JSON, spec.title),
    ]
    if wants_html(request, q.get("f")):
        feat = orjson.loads(text)
        rows = [{"property": k, "value": v} for k, v in (feat.get("properties") or {}).items()]
        rows.append({"property": "geometry", "value": feat.get("geometry")})
        return pages.table(f"{spec.title}: {feature_id}", links, rows, ["property", "value"])
    body = text[:-1] + ',"links":' + orjson.dumps(links).decode() + "}"
    headers = {"ETag": etag("item/1", spec.id, coords, text), "Cache-Control": "no-cache"}
    if coords == "wgs84":
        headers["Content-Crs"] = f"<{CRS84}>"
    if matches(request.headers.get("if-none-match"), headers["ETag"]):
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
            return error_response(405, "method_not_allowed", message, None, {"Allow": "GET"})
    raise e.NotFound(f"no resource {path[:80]}", {"see": f"{PREFIX}/api"})


def install(app: FastAPI) -> None:
    """Register the feed's routes on the app."""
    app.include_router(router)
