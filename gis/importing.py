"""Checking the rows of a boundary file before anything is stored.

Pure: the caller reads the file and supplies the codes already known to the database. Each bad
row is reported with its 1-based row number (the feature's position in the file) and a reason;
repaired geometries are reported too. Coordinates come out in WGS84.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point
from shapely.geometry.base import BaseGeometry

from gis.crs import Crs, geometry_to_wgs84, to_wgs84

FieldKind = Literal["str", "bool", "json", "strlist", "point"]
GeometryKind = Literal["polygon", "line_or_polygon"]


@dataclass(frozen=True)
class FieldRule:
    """A property of the file: its name there, its column, its kind, whether it is required."""

    name: str
    column: str
    kind: FieldKind = "str"
    required: bool = False
    pattern: str | None = None
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()
    default: Any = None  # used when the value is missing and not required


@dataclass(frozen=True)
class ImportRules:
    """How one layer's files are checked."""

    layer: str
    fields: tuple[FieldRule, ...]
    geometry: GeometryKind = "polygon"
    code_field: str = "code"
    parent_field: str | None = None  # the field naming a parent record that must exist
    side_from_code: bool = True  # the code starts with the 6-digit side code
    parent_is_prefix: bool = False  # the parent's code is a prefix of the row's code
    level_code_lengths: tuple[
        tuple[str, int], ...
    ] = ()  # e.g. (("town", 9),): code length by level


@dataclass(frozen=True)
class RowProblem:
    row: int
    code: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class CleanRow:
    row: int
    values: dict[str, Any]
    geom: BaseGeometry
    repaired: str | None = None


@dataclass
class CheckResult:
    rows: list[CleanRow] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def repairs(self) -> list[dict[str, Any]]:
        return [
            {"row": r.row, "code": r.values.get("code"), "repair": r.repaired}
            for r in self.rows
            if r.repaired
        ]


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


def _missing(v: Any) -> bool:
    return (
        v is None
        or (isinstance(v, float) and math.isnan(v))
        or (isinstance(v, str) and not v.strip())
    )


def _coerce(rule: FieldRule, v: Any, crs: Crs) -> Any:
    """Coerce one value to the rule's kind; raise ValueError with a reason."""
    if rule.kind == "str":
        if isinstance(v, float) and v.is_integer():
            v = int(v)  # shapefiles turn numeric-looking codes into floats
        s = str(v).strip()
        if rule.pattern and not re.fullmatch(rule.pattern, s):
            raise ValueError(f"{rule.name} {s!r} does not have the form {rule.pattern}")
        if rule.choices and s not in rule.choices:
            raise ValueError(f"{rule.name} {s!r} is not one of {', '.join(rule.choices)}")
        return s
    if rule.kind == "bool":
        if isinstance(v, bool | np.bool_):
            return bool(v)
        s = str(v).strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise ValueError(f"{rule.name} {v!r} is not true or false")
    if rule.kind in ("json", "strlist"):
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                if rule.kind == "strlist":
                    v = [p.strip() for p in v.split(",") if p.strip()]
                else:
                    raise ValueError(f"{rule.name} is not valid JSON") from None
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if rule.kind == "strlist":
            if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
                raise ValueError(f"{rule.name} must be a list of strings")
            return [str(x) for x in v]
        return v
    if rule.kind == "point":
        if isinstance(v, str):
            v = json.loads(v)
        if isinstance(v, dict) and v.get("type") == "Point":
            v = v.get("coordinates")
        if not (isinstance(v, list | tuple | np.ndarray) and len(v) == 2):
            raise ValueError(f"{rule.name} must be [lon, lat]")
        x, y = float(v[0]), float(v[1])
        if not (math.isfinite(x) and math.isfinite(y) and abs(x) <= 180 and abs(y) <= 90):
            raise ValueError(f"{rule.name} coordinates out of range")
        return Point(*to_wgs84(x, y, crs))
    raise ValueError(f"unknown field kind {rule.kind}")


def _geometry(
    geom: BaseGeometry | None, kind: GeometryKind, crs: Crs
) -> tuple[BaseGeometry, str | None]:
    """Check, convert to WGS84 and repair one geometry; raise ValueError with a reason."""
    if geom is None or geom.is_empty:
        raise ValueError("the geometry is empty")
    gtype = geom.geom_type
    allowed: tuple[str, ...] = ("Polygon", "MultiPolygon")
    if kind == "line_or_polygon":
        allowed += ("LineString", "MultiLineString")
    if gtype not in allowed:
        raise ValueError(f"the geometry is a {gtype}; expected {' or '.join(allowed)}")
    coords = shapely.get_coordinates(geom)
    if not np.isfinite(coords).all():
        raise ValueError("the geometry has NaN or infinite coordinates")
    if (np.abs(coords[:, 0]) > 180).any() or (np.abs(coords[:, 1]) > 90).any():
        raise ValueError(
            "coordinates out of range (longitude ±180, latitude ±90): "
            "is the file in a projected CRS? reproject it to longitude/latitude first"
        )
    geom = geometry_to_wgs84(geom, crs)
    repaired = None
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        fixed = shapely.make_valid(geom)
        if kind == "polygon" or gtype.endswith("Polygon"):
            fixed = _polygonal(fixed)
        if fixed.is_empty:
            raise ValueError(f"the geometry is invalid ({reason}) and nothing is left after repair")
        geom = fixed
        repaired = f"repaired invalid geometry: {reason}"
    if geom.geom_type == "Polygon":
        geom = MultiPolygon([geom])
    return geom, repaired


def _polygonal(g: BaseGeometry) -> BaseGeometry:
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return shapely.MultiPolygon()
    return shapely.union_all(parts)


def check_rows(
    rules: ImportRules,
    records: Sequence[dict[str, Any]],
    geoms: Sequence[BaseGeometry | None],
    *,
    crs: Crs,
    side: str | None,
    known_parents: set[str],
    known_sides: set[str],
) -> CheckResult:
    """Check every row; good rows come back converted to WGS84 with their column values.

    ``known_parents`` holds the parent codes already stored; parents defined earlier in the
    same file count too (for areas: towns before their villages is not required).
    """
    result = CheckResult()
    codes_in_file: dict[str, int] = {}
    for i, rec in enumerate(records):
        code = rec.get(rules.code_field)
        if not _missing(code):
            codes_in_file.setdefault(str(code).strip(), i + 1)
    parents = set(known_parents) | set(codes_in_file)
    sides = set(known_sides)
    if rules.layer == "areas":
        sides |= {
            str(r.get(rules.code_field)).strip()
            for r in records
            if str(r.get("level", "")).strip() == "district"
        }
    seen: set[str] = set()
    for i, (rec, geom) in enumerate(zip(records, geoms, strict=True)):
        row = i + 1
        code_raw = rec.get(rules.code_field)
        code = None if _missing(code_raw) else str(code_raw).strip()
        try:
            values: dict[str, Any] = {}
            for rule in rules.fields:
                v = rec.get(rule.name)
                for alias in rule.aliases:
                    if _missing(v):
                        v = rec.get(alias)
                if _missing(v):
                    if rule.required:
                        raise ValueError(f"missing {rule.name}")
                    values[rule.column] = rule.default
                    continue
                values[rule.column] = _coerce(rule, v, crs)
            code = values.get("code")
            if code in seen:
                raise ValueError(f"code {code} appears more than once in the file")
            row_side = values.get("side")
            if rules.side_from_code and code:
                if row_side and row_side != code[:6]:
                    raise ValueError(f"side {row_side} does not match the code's prefix {code[:6]}")
                row_side = values["side"] = row_side or code[:6]
            if not row_side:
                raise ValueError("missing side")
            if side is not None and row_side != side:
                raise ValueError(
                    f"wrong side: the row is on side {row_side}, the load is for {side}"
                )
            if row_side not in sides:
                raise ValueError(f"unknown side {row_side}; load its district first")
            lengths = dict(rules.level_code_lengths)
            level = values.get("level")
            if level in lengths and len(str(code)) != lengths[level]:
                raise ValueError(f"a {level} code has {lengths[level]} digits; got {code}")
            if rules.parent_field:
                parent = values.get(rules.parent_field)
                if parent is not None and parent not in parents:
                    raise ValueError(f"unknown parent {parent}")
                if (
                    parent is not None
                    and rules.parent_is_prefix
                    and not str(code).startswith(parent)
                ):
                    raise ValueError(
                        f"the code {code} does not start with its parent's code {parent}"
                    )
                if parent is None and level not in (None, "district"):
                    raise ValueError(f"missing {rules.parent_field}: a {level} needs its parent")
            wgs, repaired = _geometry(geom, rules.geometry, crs)
        except ValueError as exc:
            result.problems.append(RowProblem(row, code, str(exc)))
            continue
        seen.add(str(code))
        result.rows.append(CleanRow(row, values, wgs, repaired))
    return result
