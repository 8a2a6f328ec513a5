"""The query parameters of the feed: one table, read by the handlers (which names each
operation accepts) and by the OpenAPI document (their descriptions and schemas), and the
parsing of an items request into a ``layers.features.Query``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from api import params
from api.routes.ogc.common import COORDS, CRS84
from gis import cql
from gis import errors as e
from layers import features

LIMIT_DEFAULT = 100
LIMIT_MAX = 10_000
SYNC_PARAM = "updated_since"  # only on collections with an updated_at column
CRS_SCHEMA = {"type": "string", "format": "uri", "enum": [CRS84], "default": CRS84}


@dataclass(frozen=True)
class QueryParam:
    """A query parameter: its name, what it does, its schema, and the operations taking it
    (``doc``: landing page, conformance, API, collections, queryables; ``items``; ``item``)."""

    name: str
    description: str
    schema: dict[str, Any]
    operations: frozenset[str] = field(default_factory=lambda: frozenset({"items"}))

    def openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": "query",
            "required": False,
            "description": self.description,
            "style": "form",
            "explode": False,
            "schema": self.schema,
        }


EVERYWHERE = frozenset({"doc", "items", "item"})
FEATURES = frozenset({"items", "item"})

PARAMETERS: tuple[QueryParam, ...] = (
    QueryParam(
        "f",
        "The format: json (GeoJSON for features) or html.",
        {"type": "string", "enum": ["json", "html"]},
        EVERYWHERE,
    ),
    QueryParam(
        "limit",
        f"Features per page, 1 to {LIMIT_MAX} (larger values are clamped to {LIMIT_MAX}).",
        {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": LIMIT_DEFAULT},
    ),
    QueryParam(
        "bbox",
        "Only features whose geometry intersects this box: west,south,east,north in WGS84 "
        "degrees (six numbers with heights are accepted; a west larger than east crosses "
        "the antimeridian).",
        {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
    ),
    QueryParam("bbox-crs", "The CRS of bbox: only CRS84.", CRS_SCHEMA),
    QueryParam(
        "datetime",
        "The collection's time (its temporal column) is this RFC 3339 instant, or falls in "
        "the interval start/end, where .. (or nothing) leaves an end open: "
        "2026-11-01T00:00:00Z/.. or ../2026-11-30T00:00:00+08:00.",
        {"type": "string"},
    ),
    QueryParam(
        "crs", "The CRS of the response: only CRS84 (see also coords).", CRS_SCHEMA, FEATURES
    ),
    QueryParam(
        "filter",
        "A CQL2 filter on the queryables: comparisons, AND/OR/NOT, LIKE, BETWEEN, IN, "
        "IS NULL, S_INTERSECTS(geometry, <WKT or BBOX in WGS84>), A_OVERLAPS and "
        "A_CONTAINS on lists.",
        {"type": "string"},
    ),
    QueryParam(
        "filter-lang",
        "The language of filter.",
        {"type": "string", "enum": ["cql2-text", "cql2-json"], "default": "cql2-text"},
    ),
    QueryParam("filter-crs", "The CRS of geometry literals in filter: only CRS84.", CRS_SCHEMA),
    QueryParam(
        "coords",
        "Vendor parameter: the coordinates of the response. wgs84 (the default, CRS84), "
        "gcj02 (Amap, Tencent and WeChat maps) or bd09 (Baidu maps). Filters and bbox are "
        "always WGS84.",
        {"type": "string", "enum": list(COORDS), "default": "wgs84"},
        FEATURES,
    ),
    QueryParam(
        "cursor",
        "An opaque position from a next or prev link; do not make one up.",
        {"type": "string"},
    ),
    QueryParam(
        SYNC_PARAM,
        "Incremental sync: only features changed after this RFC 3339 time (updated_at > "
        "value). Combine with If-None-Match for a cheap 304 when nothing changed.",
        {"type": "string", "format": "date-time"},
        frozenset(),  # offered per collection, where it has updated_at (see items_params)
    ),
)
BY_NAME = {p.name: p for p in PARAMETERS}


def taken_by(operation: str) -> tuple[str, ...]:
    """The names of the parameters an operation takes, in the table's order."""
    return tuple(p.name for p in PARAMETERS if operation in p.operations)


ITEMS_PARAMS = taken_by("items")  # besides the collection's properties


def property_parameter(name: str, kind: str) -> dict[str, Any]:
    """The OpenAPI parameter of a ``name=value`` filter on a public property."""
    how = {
        "array": "features whose list shares a value with these (comma-separated)",
        "boolean": "true or false",
        "datetime": "an RFC 3339 instant, or an interval start/end with .. for an open end",
        "date": "a date, or an interval start/end with .. for an open end",
    }.get(kind, "any of these values (comma-separated)")
    return QueryParam(name, f"Filter on the property {name}: {how}.", _param_schema(kind)).openapi()


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


def items_params(coll: features.Collection) -> set[str]:
    allowed = set(ITEMS_PARAMS) | set(property_params(coll))
    if coll.has_updated_at:
        allowed.add(SYNC_PARAM)
    return allowed


def property_params(coll: features.Collection) -> dict[str, str]:
    """Public properties usable as ``name=value`` filters, with their kind."""
    return {
        name: kind
        for name, kind in coll.kinds.items()
        if kind != "object" and name not in ITEMS_PARAMS and name != SYNC_PARAM
    }


def limit_of(text: str | None) -> int:
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


def check_crs(name: str, value: str | None) -> None:
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


def parse_query(
    q: dict[str, str], coll: features.Collection, sensitive: frozenset[str]
) -> tuple[features.Query, str]:
    """The selection of an items request, and the output coordinate system."""
    check_crs("bbox-crs", q.get("bbox-crs"))
    check_crs("crs", q.get("crs"))
    check_crs("filter-crs", q.get("filter-crs"))
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
    for name, kind in property_params(coll).items():
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


def cursor_of(text: str | None, coll: features.Collection) -> tuple[str, tuple[str, ...]] | None:
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
