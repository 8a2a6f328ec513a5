"""Parsing GeoJSON geometries from requests, with errors that say how to fix them."""

from __future__ import annotations

import math
from typing import Any

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from gis.errors import GeometryTooLarge, InvalidGeometry


def parse_geometry(
    obj: Any, *, allowed: tuple[str, ...], field: str, max_vertices: int
) -> BaseGeometry:
    """A shapely geometry from a GeoJSON object of one of the ``allowed`` types.

    Raises ``InvalidGeometry`` for anything malformed, empty, non-finite or invalid, and
    ``GeometryTooLarge`` above ``max_vertices`` vertices.
    """
    if not isinstance(obj, dict) or "type" not in obj:
        raise InvalidGeometry(
            f"{field} must be a GeoJSON geometry object with a type",
            {"field": field, "allowed": list(allowed)},
        )
    gtype = obj.get("type")
    if gtype not in allowed:
        raise InvalidGeometry(
            f"{field} must be a GeoJSON {' or '.join(allowed)}; got {str(gtype)[:40]!r}",
            {"field": field, "allowed": list(allowed)},
        )
    coords = obj.get("coordinates")
    if not isinstance(coords, list):
        raise InvalidGeometry(f"{field}.coordinates must be an array", {"field": field})
    try:
        geom = shape(obj)
    except Exception as exc:  # shapely raises several types for malformed coordinate arrays
        raise InvalidGeometry(
            f"{field} has malformed coordinates: {str(exc)[:200]}",
            {"field": field, "hint": "coordinates are [longitude, latitude] pairs"},
        ) from None
    n = int(shapely.get_num_coordinates(geom))
    if n > max_vertices:
        raise GeometryTooLarge(
            f"{field} has {n} vertices; at most {max_vertices} are accepted",
            {"field": field, "vertices": n, "max": max_vertices, "hint": "simplify the geometry"},
        )
    if geom.is_empty:
        raise InvalidGeometry(f"{field} is empty", {"field": field})
    xy = shapely.get_coordinates(geom)
    if not all(math.isfinite(v) for v in xy.ravel()):
        raise InvalidGeometry(f"{field} has non-finite coordinates", {"field": field})
    if (abs(xy[:, 0]) > 180).any() or (abs(xy[:, 1]) > 90).any():
        raise InvalidGeometry(
            f"{field} has coordinates out of range (longitude ±180, latitude ±90)",
            {"field": field, "hint": "coordinates are [longitude, latitude]"},
        )
    if not geom.is_valid:
        raise InvalidGeometry(
            f"{field} is not a valid geometry: {shapely.is_valid_reason(geom)}",
            {"field": field, "reason": shapely.is_valid_reason(geom)},
        )
    return geom


def point_lonlat(obj: Any, *, field: str = "location") -> tuple[float, float]:
    """(lon, lat) from a GeoJSON Point, unchecked for range (see ``gis.location.check_lonlat``)."""
    if not isinstance(obj, dict) or obj.get("type") != "Point":
        raise InvalidGeometry(
            f'{field} must be a GeoJSON Point, e.g. {{"type": "Point", "coordinates": [105.6, 30.2]}}',
            {"field": field},
        )
    c = obj.get("coordinates")
    if not isinstance(c, list | tuple) or len(c) not in (2, 3):
        raise InvalidGeometry(
            f"{field}.coordinates must be [longitude, latitude]", {"field": field}
        )
    return c[0], c[1]
