"""The OpenAPI 3.0 document of the feed, built from the layer registry (one set of paths per
collection, with its own property parameters, which is how GDAL and QGIS learn what they can
push to the server) and the parameter table (``parameters.PARAMETERS``).

FastAPI writes OpenAPI 3.1, while OGC API clients (GDAL, QGIS, ogctests) read 3.0, so this
document is our own. Self-contained (local $refs only). The schemas of the answers and the
error responses are declarative tables below.
"""

from __future__ import annotations

from typing import Any

from api.routes.ogc.common import GEOJSON, HTML, JSON, OPENAPI, SCHEMA
from api.routes.ogc.parameters import (
    PARAMETERS,
    SYNC_PARAM,
    property_parameter,
    property_params,
    taken_by,
)
from layers import features

# The capability documents: path, summary, operationId, response schema, media type.
CAPABILITIES = (
    ("/", "The landing page", "getLandingPage", "landingPage", JSON),
    ("/conformance", "The conformance classes", "getConformance", "confClasses", JSON),
    ("/api", "This API definition", "getAPI", "anyObject", OPENAPI),
    ("/collections", "The collections", "getCollections", "collections", JSON),
)
# Each collection's documents and operations: path under the collection, summary, operationId
# prefix, response schema, media type (features: GeoJSON or HTML).
PER_COLLECTION = (
    ("", "The collection {cid}", "describeCollection", "collection", JSON),
    ("/queryables", "The queryables of {cid}", "getQueryables", "anyObject", SCHEMA),
)
ITEMS_NOTE = (
    " Paged by keyset: follow the `next` link. Responses carry an ETag; send it back "
    "in If-None-Match to get 304 when nothing changed."
)


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


def _operation(
    tag: str,
    summary: str,
    op: str,
    parameters: list[dict[str, Any]],
    ok: dict[str, Any],
    *,
    description: str | None = None,
    not_found: bool = False,
    not_modified: bool = False,
) -> dict[str, Any]:
    get: dict[str, Any] = {"tags": [tag], "summary": summary}
    if description is not None:
        get["description"] = description
    get["operationId"] = op
    get["parameters"] = parameters
    get["responses"] = _responses(ok, not_found=not_found, not_modified=not_modified)
    return {"get": get}


def _document(summary: str, op: str, schema: str, media: str, *, not_found: bool) -> Any:
    ok = {"description": summary, "content": _content(_ref("schemas", schema), media, HTML)}
    params = [_ref("parameters", n) for n in taken_by("doc")]
    return _operation("Capabilities", summary, op, params, ok, not_found=not_found)


def _items_operation(coll: features.Collection) -> dict[str, Any]:
    spec = coll.spec
    parameters = [_ref("parameters", n) for n in taken_by("items")]
    if coll.has_updated_at:
        parameters.append(_ref("parameters", SYNC_PARAM))
    parameters.extend(property_parameter(n, k) for n, k in property_params(coll).items())
    ok = {
        "description": "The features (GeoJSON), or an HTML page with f=html",
        "content": _content(_ref("schemas", "featureCollectionGeoJSON"), GEOJSON, HTML),
    }
    return _operation(
        "Data",
        f"{spec.title}: the features",
        f"getFeatures_{spec.id}",
        parameters,
        ok,
        description=spec.description + ITEMS_NOTE,
        not_found=True,
        not_modified=True,
    )


def _item_operation(coll: features.Collection) -> dict[str, Any]:
    spec = coll.spec
    parameters = [_ref("parameters", "featureId")]
    parameters.extend(_ref("parameters", n) for n in taken_by("item"))
    ok = {
        "description": "The feature (GeoJSON), or an HTML page with f=html",
        "content": _content(_ref("schemas", "featureGeoJSON"), GEOJSON, HTML),
    }
    return _operation(
        "Data",
        f"{spec.title}: one feature",
        f"getFeature_{spec.id}",
        parameters,
        ok,
        not_found=True,
        not_modified=True,
    )


def openapi_document(base: str, colls: list[features.Collection]) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of the feed, for the server at ``base``."""
    paths: dict[str, Any] = {
        path: _document(summary, op, schema, media, not_found=False)
        for path, summary, op, schema, media in CAPABILITIES
    }
    for coll in colls:
        cid = coll.spec.id
        for tail, summary, op, schema, media in PER_COLLECTION:
            paths[f"/collections/{cid}{tail}"] = _document(
                summary.format(cid=cid), f"{op}_{cid}", schema, media, not_found=True
            )
        paths[f"/collections/{cid}/items"] = _items_operation(coll)
        paths[f"/collections/{cid}/items/{{featureId}}"] = _item_operation(coll)
    return {
        "openapi": "3.0.3",
        "info": INFO,
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


INFO = {
    "title": "JointGrid feeds",
    "version": "1.0.0",
    "description": "OGC API - Features (Part 1 Core, GeoJSON, HTML, OpenAPI 3.0; Part 2 "
    "with CRS84; Part 3 queryables and CQL2 filters) for the governance layers and "
    "public incidents of the Anju (510904) - Tongnan (500152) border. Coordinates are "
    "WGS84 longitude/latitude (CRS84); the vendor parameter `coords` returns GCJ-02 or "
    "BD-09 for Chinese map platforms. Public incidents carry no reporter identity or "
    "contacts, and sensitive categories are shown at their grid's centroid.",
    "license": {"name": "MIT"},
}


def _parameters() -> dict[str, Any]:
    out = {p.name: p.openapi() for p in PARAMETERS}
    out["featureId"] = {
        "name": "featureId",
        "in": "path",
        "required": True,
        "description": "The id of a feature.",
        "schema": {"type": "string"},
    }
    return out


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
