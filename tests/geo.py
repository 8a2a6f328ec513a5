"""Test geometry on the real border, computed independently (pyproj + shapely in EPSG:4544)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pyproj
import shapely
from shapely.geometry import Point, shape
from shapely.ops import transform

ROOT = Path(__file__).resolve().parents[1]
ANJU, TONGNAN = "510904", "500152"
_FWD = pyproj.Transformer.from_crs(4326, 4544, always_xy=True)
_INV = pyproj.Transformer.from_crs(4544, 4326, always_xy=True)


def to_m(g):  # type: ignore[no-untyped-def]
    return transform(_FWD.transform, g)


def to_deg(g):  # type: ignore[no-untyped-def]
    return transform(_INV.transform, g)


@cache
def districts_m() -> dict[str, shapely.Geometry]:
    fc = json.loads((ROOT / "boundary_data" / "districts.geojson").read_text())
    return {f["properties"]["code"]: to_m(shape(f["geometry"])) for f in fc["features"]}


@cache
def line_m() -> shapely.Geometry:
    d = districts_m()
    return shapely.line_merge(d[ANJU].boundary.intersection(d[TONGNAN].buffer(1.0)))


def side_of(lon: float, lat: float) -> str | None:
    p = to_m(Point(lon, lat))
    for code, poly in districts_m().items():
        if poly.contains(p):
            return code
    return None


def distance_to_other(lon: float, lat: float, side: str) -> float:
    other = TONGNAN if side == ANJU else ANJU
    return float(districts_m()[other].distance(to_m(Point(lon, lat))))


def point_inside(side: str, metres: float, fraction: float = 0.5) -> tuple[float, float]:
    """A WGS84 point on ``side`` about ``metres`` from the line, near ``fraction`` along it.

    Walks the normal of the line at that place until the independent distance to the other
    side matches within 2 m.
    """
    line = line_m()
    if line.geom_type == "MultiLineString":
        line = max(line.geoms, key=lambda g: g.length)
    base = line.interpolate(fraction, normalized=True)
    ahead = line.interpolate(min(fraction + 0.002, 1.0), normalized=True)
    behind = line.interpolate(max(fraction - 0.002, 0.0), normalized=True)
    dx, dy = ahead.x - behind.x, ahead.y - behind.y
    n = np.array([-dy, dx]) / np.hypot(dx, dy)
    poly = districts_m()[side]
    other = districts_m()[TONGNAN if side == ANJU else ANJU]
    for sign in (1, -1):
        t = metres
        for _ in range(60):
            cand = Point(base.x + sign * n[0] * t, base.y + sign * n[1] * t)
            if not poly.contains(cand):
                break
            d = other.distance(cand)
            if abs(d - metres) < 2:
                p = to_deg(cand)
                return p.x, p.y
            t += (metres - d) * 0.9
    raise AssertionError(f"no point {metres} m inside {side} at {fraction}")


def line_vertex(fraction: float = 0.5) -> tuple[float, float]:
    """A vertex of the shared line (exactly on both districts' boundaries), WGS84."""
    fc = json.loads((ROOT / "boundary_data" / "districts.geojson").read_text())
    polys = {f["properties"]["code"]: shape(f["geometry"]) for f in fc["features"]}
    shared = shapely.get_coordinates(polys[ANJU].boundary)
    tong = {tuple(c) for c in shapely.get_coordinates(polys[TONGNAN].boundary)}
    common = [tuple(c) for c in shared if tuple(c) in tong]
    x, y = common[int(len(common) * fraction)]
    return float(x), float(y)


def hand_strip_to_anju(conn, width_m: float) -> None:  # type: ignore[no-untyped-def]
    """Move the boundary in the database: Tongnan hands Anju the strip of its territory within
    ``width_m`` of Anju (a boundary change for re-route tests; rolled back with the test)."""
    conn.execute(
        "CREATE TEMP TABLE _strip ON COMMIT DROP AS SELECT ST_Intersection(t.geom,"
        " ST_Buffer(a.geom::geography, %s)::geometry) AS g FROM areas t, areas a"
        " WHERE t.code = %s AND a.code = %s",
        (width_m, TONGNAN, ANJU),
    )
    for code, op in ((ANJU, "ST_Union"), (TONGNAN, "ST_Difference")):
        conn.execute(
            f"UPDATE areas SET geom = ST_Multi(ST_CollectionExtract(ST_MakeValid({op}(geom,"
            " (SELECT g FROM _strip))), 3)) WHERE code = %s",
            (code,),
        )
