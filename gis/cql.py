"""CQL2 filters (OGC API - Features Part 3): parse, check against a collection's queryables, and
return a small typed tree that the storage layer turns into SQL with bound values.

Pure: no database. The `cql2` library parses CQL2 text (and CQL2 JSON) into CQL2 JSON; this
module walks that JSON and accepts only what it can translate faithfully:

- comparisons ``= <> < <= > >=`` between a property and a literal of the property's type;
- ``AND``, ``OR``, ``NOT``, ``IS NULL``;
- ``LIKE`` (``%`` and ``_`` wildcards, ``\\`` escapes), ``BETWEEN``, ``IN``;
- ``S_INTERSECTS(geometry, <WKT or BBOX literal>)`` on the collection's geometry (WGS84 degrees);
- ``A_OVERLAPS`` / ``A_CONTAINS`` on array properties.

Anything else (unknown properties, functions, arithmetic, type mismatches) is rejected with
``InvalidInput`` naming the problem, so a client never gets a silently different filter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Literal

import shapely
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from gis.errors import InvalidInput
from gis.instants import in_utc

# The JSON Schema kind of each queryable property, as published at /queryables.
Kind = Literal["string", "integer", "number", "boolean", "datetime", "date", "array", "geometry"]

MAX_TEXT = 20_000  # characters of filter text
MAX_DEPTH = 40  # nesting of the expression tree
MAX_PARENS = 64  # nesting of parentheses in CQL2 text (the parser crashes past about 2,000)
MAX_NODES = 2_000  # predicates and literals in one filter
MAX_LIST = 1_000  # values in one IN list
MAX_VERTICES = 20_000  # vertices of one geometry literal

COMPARISONS = ("=", "<>", "<", "<=", ">", ">=")
_OTHER_OPERATORS: tuple[str, ...] = (
    "AND",
    "OR",
    "NOT",
    "IS NULL",
    "LIKE",
    "BETWEEN",
    "IN",
    "S_INTERSECTS",
)
_OTHER_OPERATORS += ("A_OVERLAPS", "A_CONTAINS")


@dataclass(frozen=True)
class Prop:
    name: str
    kind: Kind


@dataclass(frozen=True)
class Compare:
    op: str  # one of COMPARISONS
    prop: Prop
    value: Any  # str, int, float, bool or an aware datetime, matching prop.kind


@dataclass(frozen=True)
class Like:
    prop: Prop
    pattern: str


@dataclass(frozen=True)
class Between:
    prop: Prop
    low: Any
    high: Any


@dataclass(frozen=True)
class In:
    prop: Prop
    values: tuple[Any, ...]


@dataclass(frozen=True)
class IsNull:
    prop: Prop


@dataclass(frozen=True)
class ArrayOp:
    op: Literal["a_overlaps", "a_contains"]
    prop: Prop
    values: tuple[str, ...]


@dataclass(frozen=True)
class Intersects:
    prop: Prop
    geometry: BaseGeometry  # WGS84 longitude/latitude


@dataclass(frozen=True)
class Not:
    arg: Node


@dataclass(frozen=True)
class And:
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Const:
    value: bool


Node = Compare | Like | Between | In | IsNull | ArrayOp | Intersects | Not | And | Or | Const


def parse_text(text: str, queryables: Mapping[str, Kind]) -> Node:
    """Parse CQL2 text and check it against ``queryables`` (property name -> kind)."""
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"filter is longer than {MAX_TEXT} characters", {"length": len(text)})
    _check_nesting(text)
    import cql2  # a compiled parser; imported here so gis stays importable without it

    try:
        tree = cql2.parse_text(text).to_json()
    except Exception as exc:  # the parser raises ParseError or ValueError with a caret diagram
        raise InvalidInput(
            "filter is not valid CQL2 text",
            {"filter": text[:200], "reason": _first_line(exc)},
        ) from None
    return from_json(tree, queryables)


def parse_json(text: str, queryables: Mapping[str, Kind]) -> Node:
    """Parse CQL2 JSON (the text of a JSON document) and check it against ``queryables``."""
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"filter is longer than {MAX_TEXT} characters", {"length": len(text)})
    import cql2

    try:
        tree = cql2.parse_json(text).to_json()
    except Exception as exc:
        raise InvalidInput(
            "filter is not valid CQL2 JSON", {"filter": text[:200], "reason": _first_line(exc)}
        ) from None
    return from_json(tree, queryables)


def from_json(tree: Any, queryables: Mapping[str, Kind]) -> Node:
    """Check a CQL2 JSON tree against ``queryables`` and return the typed tree."""
    return _Walker(queryables).node(tree, 0)


def properties(node: Node) -> set[str]:
    """The property names a filter refers to."""
    out: set[str] = set()
    stack: list[Node] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, And | Or):
            stack.extend(n.args)
        elif isinstance(n, Not):
            stack.append(n.arg)
        elif not isinstance(n, Const):
            out.add(n.prop.name)
    return out


def _check_nesting(text: str) -> None:
    """Refuse deeply nested parentheses before the parser sees them: its recursion is not
    bounded, and thousands of "(" would crash the process rather than raise."""
    depth = deepest = 0
    quote: str | None = None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None  # a doubled quote closes and reopens: same result
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    if deepest > MAX_PARENS:
        raise InvalidInput(
            f"filter: parentheses are nested more than {MAX_PARENS} deep", {"depth": deepest}
        )


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines)[:300] if lines else type(exc).__name__


class _Walker:
    def __init__(self, queryables: Mapping[str, Kind]) -> None:
        self.queryables = queryables
        self.count = 0

    def fail(self, message: str, **detail: Any) -> InvalidInput:
        return InvalidInput(f"filter: {message}", detail or None)

    def node(self, tree: Any, depth: int) -> Node:
        self.count += 1
        if depth > MAX_DEPTH or self.count > MAX_NODES:
            raise self.fail("the expression is too large or too deeply nested")
        if isinstance(tree, bool):
            return Const(tree)
        if not isinstance(tree, dict) or "op" not in tree:
            raise self.fail("expected a predicate", got=_short(tree))
        op = str(tree["op"]).lower()
        args = tree.get("args") or []
        if not isinstance(args, list):
            raise self.fail(f"bad arguments to {op}")
        if op in ("and", "or"):
            if len(args) < 2:
                raise self.fail(f"{op.upper()} needs two operands")
            parts = tuple(self.node(a, depth + 1) for a in args)
            return And(parts) if op == "and" else Or(parts)
        if op == "not":
            self.arity(op, args, 1)
            return Not(self.node(args[0], depth + 1))
        if op in COMPARISONS:
            self.arity(op, args, 2)
            left, right = args
            if not _is_prop(left) and _is_prop(right):
                left, right = right, left
                op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
            prop = self.prop(left, op)
            if prop.kind in ("array", "geometry"):
                raise self.fail(
                    f"{prop.name} is {'an array' if prop.kind == 'array' else 'a geometry'}; "
                    f"use {'A_OVERLAPS or A_CONTAINS' if prop.kind == 'array' else 'S_INTERSECTS'}",
                    property=prop.name,
                )
            return Compare(op, prop, self.literal(prop, right))
        if op == "isnull":
            self.arity(op, args, 1)
            return IsNull(self.prop(args[0], "IS NULL"))
        if op == "like":
            self.arity(op, args, 2)
            prop = self.prop(args[0], "LIKE")
            if prop.kind != "string" or not isinstance(args[1], str):
                raise self.fail(
                    "LIKE compares a text property with a text pattern", property=prop.name
                )
            return Like(prop, args[1])
        if op == "between":
            self.arity(op, args, 3)
            prop = self.prop(args[0], "BETWEEN")
            if prop.kind not in ("integer", "number", "datetime", "date"):
                raise self.fail("BETWEEN needs a numeric or temporal property", property=prop.name)
            return Between(prop, self.literal(prop, args[1]), self.literal(prop, args[2]))
        if op == "in":
            self.arity(op, args, 2)
            prop = self.prop(args[0], "IN")
            if not isinstance(args[1], list) or not args[1]:
                raise self.fail("IN needs a non-empty list of values", property=prop.name)
            if len(args[1]) > MAX_LIST:
                raise self.fail(f"IN takes at most {MAX_LIST} values", property=prop.name)
            if prop.kind in ("array", "geometry"):
                raise self.fail(f"IN does not apply to {prop.name}", property=prop.name)
            return In(prop, tuple(self.literal(prop, v) for v in args[1]))
        if op in ("a_overlaps", "a_contains"):
            self.arity(op, args, 2)
            prop = self.prop(args[0], op.upper())
            values = args[1]
            if prop.kind != "array" or not isinstance(values, list):
                raise self.fail(f"{op.upper()} compares an array property with a list")
            if not all(isinstance(v, str) for v in values) or len(values) > MAX_LIST:
                raise self.fail(f"{op.upper()} takes up to {MAX_LIST} text values")
            return ArrayOp(op, prop, tuple(values))  # type: ignore[arg-type]
        if op == "s_intersects":
            self.arity(op, args, 2)
            left, right = args
            if not _is_prop(left) and _is_prop(right):
                left, right = right, left
            prop = self.prop(left, "S_INTERSECTS")
            if prop.kind != "geometry":
                raise self.fail("S_INTERSECTS applies to the geometry", property=prop.name)
            return Intersects(prop, self.geometry(right))
        raise self.fail(
            f"the operator {op!r} is not supported here",
            supported=[*COMPARISONS, *_OTHER_OPERATORS],
        )

    def arity(self, op: str, args: list[Any], n: int) -> None:
        if len(args) != n:
            raise self.fail(f"{op.upper()} takes {n} operand(s)")

    def prop(self, tree: Any, where: str) -> Prop:
        if not _is_prop(tree):
            raise self.fail(f"{where} needs a property on one side", got=_short(tree))
        name = str(tree["property"])
        kind = self.queryables.get(name)
        if kind is None:
            raise self.fail(f"unknown property {name[:60]!r}", queryables=sorted(self.queryables))
        return Prop(name, kind)

    def literal(self, prop: Prop, value: Any) -> Any:
        kind = prop.kind
        bad = self.fail(
            f"{prop.name} is {kind}; the value does not match",
            property=prop.name,
            got=_short(value),
        )
        if isinstance(value, dict) and "property" in value:
            raise self.fail("comparing two properties is not supported", property=prop.name)
        if kind == "string":
            if isinstance(value, str):
                return value
            raise bad
        if kind in ("integer", "number"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad
            if not math.isfinite(value):
                raise bad
            if kind == "integer" and float(value).is_integer() and abs(value) < 2**63:
                return int(value)
            return float(value)
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            raise bad
        if kind in ("datetime", "date"):
            text = None
            if isinstance(value, dict) and len(value) == 1:
                text = value.get("timestamp") or value.get("date")
            elif isinstance(value, str):
                text = value  # as GDAL sends it: a quoted RFC 3339 string
            if not isinstance(text, str):
                raise bad
            return parse_instant(text, name=prop.name)
        raise bad

    def geometry(self, value: Any) -> BaseGeometry:
        try:
            if isinstance(value, dict) and "bbox" in value:
                b = [float(v) for v in value["bbox"]]
                if len(b) == 6:
                    b = [b[0], b[1], b[3], b[4]]
                if len(b) != 4:
                    raise ValueError("a BBOX has four numbers")
                geom: BaseGeometry = box(*b)
            elif isinstance(value, dict) and "type" in value:
                geom = shape(value)
            else:
                raise ValueError("not a geometry literal")
        except (ValueError, TypeError, KeyError, shapely.errors.GEOSException) as exc:
            raise self.fail(
                "S_INTERSECTS needs a WKT geometry or BBOX", reason=str(exc)[:200]
            ) from None
        if shapely.get_num_coordinates(geom) > MAX_VERTICES:
            raise self.fail(f"a geometry literal may have at most {MAX_VERTICES} vertices")
        xy = shapely.get_coordinates(geom)
        if (
            len(xy) == 0
            or not bool(((xy[:, 0] >= -180) & (xy[:, 0] <= 180)).all())
            or not bool(((xy[:, 1] >= -90) & (xy[:, 1] <= 90)).all())
        ):
            raise self.fail("geometry literals are WGS84 longitude/latitude (CRS84) degrees")
        return geom


def _is_prop(tree: Any) -> bool:
    return isinstance(tree, dict) and set(tree) == {"property"}


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 120 else text[:120] + "…"


def parse_instant(text: str, *, name: str) -> datetime:
    """An RFC 3339 date-time with a zone (or a date, taken as its start in UTC), in UTC."""
    t = text.strip()
    try:
        if len(t) == 10:
            return datetime.combine(date.fromisoformat(t), time(0), tzinfo=UTC)
        if "T" not in t.upper()[:11] and " " not in t[:11]:
            raise ValueError
        parsed = datetime.fromisoformat(t.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{name}: {t[:40]!r} is not an RFC 3339 date-time",
            {"example": "2026-11-27T08:00:00Z"},
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInput(
            f"{name}: {t[:40]!r} needs a time zone (Z or an offset such as +08:00)",
            {"example": "2026-11-27T08:00:00+08:00"},
        )
    return in_utc(parsed, name=name, text=t)
