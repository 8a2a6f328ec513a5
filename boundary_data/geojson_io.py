"""Shared helpers for the boundary-data scripts: projections, rounding and GeoJSON output.

Storage is WGS84 longitude/latitude in degrees (EPSG:4326, RFC 7946). Geometry work is done
in metres in EPSG:4544 (CGCS2000 / 3-degree Gauss-Kruger CM 105E), whose central meridian
runs through both districts, so lengths and areas there are true to about 1e-4.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Transformer
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

HERE = Path(__file__).resolve().parent
METRIC_EPSG = 4544
DECIMALS = 7  # 1e-7 degrees is about 1 cm here

_TO_METRIC = Transformer.from_crs(4326, METRIC_EPSG, always_xy=True)
_TO_WGS84 = Transformer.from_crs(METRIC_EPSG, 4326, always_xy=True)


def _apply(
    transformer: Transformer,
) -> Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
    def fn(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return fn


def to_metric(geoms: Any) -> Any:
    """WGS84 degrees -> EPSG:4544 metres (a geometry or an array of geometries)."""
    return shapely.transform(geoms, _apply(_TO_METRIC))


def to_wgs84(geoms: Any) -> Any:
    """EPSG:4544 metres -> WGS84 degrees (a geometry or an array of geometries)."""
    return shapely.transform(geoms, _apply(_TO_WGS84))


def point_to_wgs84(x: float, y: float) -> list[float]:
    """One EPSG:4544 point (metres) as a rounded [lon, lat] list in WGS84 degrees."""
    lon, lat = _TO_WGS84.transform(x, y)
    return [round(float(lon), DECIMALS), round(float(lat), DECIMALS)]


def round_coords(geoms: Any, decimals: int = DECIMALS) -> Any:
    """Round every coordinate; identical inputs give identical outputs, so shared vertices stay
    shared between neighbouring polygons."""
    return shapely.transform(geoms, lambda xy: np.round(xy, decimals))


def for_output(geoms: Any) -> Any:
    """EPSG:4544 metres -> rounded WGS84 with RFC 7946 ring orientation (exterior CCW)."""
    return shapely.orient_polygons(round_coords(to_wgs84(geoms)), exterior_cw=False)


def feature(geom: BaseGeometry, properties: Mapping[str, Any]) -> dict[str, Any]:
    """A GeoJSON Feature; ``geom`` must already be in WGS84 degrees."""
    return {"type": "Feature", "properties": dict(properties), "geometry": mapping(geom)}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def write_collection(
    path: Path, metadata: Mapping[str, Any], features: Iterable[Mapping[str, Any]]
) -> int:
    """Write a FeatureCollection with a top-level ``metadata`` foreign member, one feature per
    line so that diffs stay readable. Keys are sorted and floats use Python's shortest repr, so
    the bytes depend only on the values. Returns the file size in bytes."""
    lines = [_dumps(f) for f in features]
    text = (
        '{"type":"FeatureCollection",\n"metadata":'
        + _dumps(metadata)
        + ',\n"features":[\n'
        + ",\n".join(lines)
        + "\n]}\n"
    )
    path.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def read_collection(path: Path) -> list[dict[str, Any]]:
    """The features of a GeoJSON FeatureCollection."""
    return list(json.loads(path.read_text(encoding="utf-8"))["features"])
