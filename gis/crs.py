"""Coordinate systems used by phones and map SDKs in China, and exact conversions to WGS84.

- ``wgs84``: GPS, phone operating systems (EPSG:4326).
- ``cgcs2000``: China's geodetic datum (EPSG:4490); equal to WGS84 to well under a metre at
  this scale, so it passes through unchanged.
- ``gcj02``: the obfuscated "Mars" system of Amap, Tencent and WeChat maps.
- ``bd09``: Baidu's further offset of GCJ-02.

GCJ-02 and BD-09 are not in PROJ. The forward formulas are the published ones; the inverses
are solved by fixed-point iteration to 1e-12 degrees (about 0.1 micrometre), so a round trip is
exact for every practical purpose. All functions are vectorised over numpy arrays and accept
scalars too. Longitudes and latitudes are in degrees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from gis.errors import UnknownCrs

Crs = Literal["wgs84", "cgcs2000", "gcj02", "bd09"]
SUPPORTED_CRS: tuple[Crs, ...] = ("wgs84", "cgcs2000", "gcj02", "bd09")

# Krasovsky 1940 ellipsoid, as used by the GCJ-02 formulas.
_A = 6378245.0
_EE = 0.00669342162296594323
_X_PI = math.pi * 3000.0 / 180.0
_TOL_DEG = 1e-12
_MAX_ITER = 50

# GCJ-02 offsets apply only inside this rough box around China; outside it the
# published implementations leave coordinates unchanged, and so do we.
_CHINA_BOX = (72.004, 0.8293, 137.8347, 55.8271)

Num = TypeVar("Num", float, npt.NDArray[np.float64])
Arr = npt.NDArray[np.float64]


def parse_crs(name: str | None) -> Crs:
    """Return the canonical CRS name, or raise ``UnknownCrs`` listing the accepted names."""
    if name is None:
        return "wgs84"
    key = str(name).strip().lower().replace("-", "").replace("_", "").replace(":", "")
    aliases = {
        "wgs84": "wgs84",
        "epsg4326": "wgs84",
        "4326": "wgs84",
        "crs84": "wgs84",
        "cgcs2000": "cgcs2000",
        "epsg4490": "cgcs2000",
        "4490": "cgcs2000",
        "gcj02": "gcj02",
        "gcj": "gcj02",
        "bd09": "bd09",
        "bd09ll": "bd09",
    }
    if key not in aliases:
        raise UnknownCrs(
            f"unknown coordinate system {name!r}",
            {"accepted": list(SUPPORTED_CRS)},
        )
    return cast(Crs, aliases[key])


def _in_china(lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    w, s, e, n = _CHINA_BOX
    return (lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)


def _delta(lon: Arr, lat: Arr) -> tuple[Arr, Arr]:
    """GCJ-02 offset (dlon, dlat) in degrees at WGS84 (lon, lat)."""
    x = lon - 105.0
    y = lat - 35.0
    sxp = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sxp + common
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sxp + common
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    radlat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    inside = _in_china(lon, lat)
    return np.where(inside, dlon, 0.0), np.where(inside, dlat, 0.0)


def _arrays(lon: Num, lat: Num) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], bool]:
    scalar = np.ndim(lon) == 0 and np.ndim(lat) == 0
    return (
        np.atleast_1d(np.asarray(lon, dtype=np.float64)),
        np.atleast_1d(np.asarray(lat, dtype=np.float64)),
        scalar,
    )


def _out(lon: Arr, lat: Arr, scalar: bool) -> tuple[Any, Any]:
    if scalar:
        return float(lon[0]), float(lat[0])
    return lon, lat


def _wgs_to_gcj(lon: Arr, lat: Arr) -> tuple[Arr, Arr]:
    dlon, dlat = _delta(lon, lat)
    return lon + dlon, lat + dlat


def _gcj_to_wgs(glon: Arr, glat: Arr) -> tuple[Arr, Arr]:
    # Fixed point: w = g - delta(w). The offset varies slowly (its derivative is ~1e-5),
    # so each step gains about five digits; three or four steps reach 1e-12 degrees.
    lon, lat = glon.copy(), glat.copy()
    for _ in range(_MAX_ITER):
        dlon, dlat = _delta(lon, lat)
        nlon, nlat = glon - dlon, glat - dlat
        done = np.all(np.abs(nlon - lon) < _TOL_DEG) and np.all(np.abs(nlat - lat) < _TOL_DEG)
        lon, lat = nlon, nlat
        if done:
            break
    return lon, lat


def _gcj_to_bd(lon: Arr, lat: Arr) -> tuple[Arr, Arr]:
    z = np.sqrt(lon * lon + lat * lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _bd_to_gcj(blon: Arr, blat: Arr) -> tuple[Arr, Arr]:
    # Start from Baidu's published approximate inverse, then correct it by fixed-point
    # iteration on the forward formula so the round trip is exact.
    x, y = blon - 0.0065, blat - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    lon, lat = z * np.cos(theta), z * np.sin(theta)
    for _ in range(_MAX_ITER):
        flon, flat = _gcj_to_bd(lon, lat)
        elon, elat = flon - blon, flat - blat
        lon, lat = lon - elon, lat - elat
        if np.all(np.abs(elon) < _TOL_DEG) and np.all(np.abs(elat) < _TOL_DEG):
            break
    return lon, lat


def _convert(kernel: Callable[[Arr, Arr], tuple[Arr, Arr]], lon: Num, lat: Num) -> tuple[Num, Num]:
    """``kernel`` (one of the array conversions above) applied to scalars or arrays alike."""
    x, y, s = _arrays(lon, lat)
    return cast(tuple[Num, Num], _out(*kernel(x, y), s))


def wgs84_to_gcj02(lon: Num, lat: Num) -> tuple[Num, Num]:
    """WGS84 degrees to GCJ-02 degrees (unchanged outside China)."""
    return _convert(_wgs_to_gcj, lon, lat)


def gcj02_to_wgs84(lon: Num, lat: Num) -> tuple[Num, Num]:
    """GCJ-02 degrees to WGS84 degrees: the exact inverse of ``wgs84_to_gcj02``."""
    return _convert(_gcj_to_wgs, lon, lat)


def gcj02_to_bd09(lon: Num, lat: Num) -> tuple[Num, Num]:
    """GCJ-02 degrees to BD-09 degrees."""
    return _convert(_gcj_to_bd, lon, lat)


def bd09_to_gcj02(lon: Num, lat: Num) -> tuple[Num, Num]:
    """BD-09 degrees to GCJ-02 degrees: the exact inverse of ``gcj02_to_bd09``."""
    return _convert(_bd_to_gcj, lon, lat)


def _same(lon: Arr, lat: Arr) -> tuple[Arr, Arr]:
    return lon, lat


def _bd_to_wgs(lon: Arr, lat: Arr) -> tuple[Arr, Arr]:
    return _gcj_to_wgs(*_bd_to_gcj(lon, lat))


def _wgs_to_bd(lon: Arr, lat: Arr) -> tuple[Arr, Arr]:
    return _gcj_to_bd(*_wgs_to_gcj(lon, lat))


# The conversion of each coordinate system to WGS84 and back; WGS84 and CGCS2000 are the same.
_TO_WGS84 = {"gcj02": _gcj_to_wgs, "bd09": _bd_to_wgs}
_FROM_WGS84 = {"gcj02": _wgs_to_gcj, "bd09": _wgs_to_bd}


def to_wgs84(lon: Num, lat: Num, crs: Crs | str = "wgs84") -> tuple[Num, Num]:
    """Convert coordinates declared in ``crs`` to WGS84 degrees."""
    return _convert(_TO_WGS84.get(parse_crs(crs), _same), lon, lat)


def from_wgs84(lon: Num, lat: Num, crs: Crs | str = "wgs84") -> tuple[Num, Num]:
    """Convert WGS84 degrees to ``crs`` (for output to GCJ-02 or BD-09 map platforms)."""
    return _convert(_FROM_WGS84.get(parse_crs(crs), _same), lon, lat)


G = TypeVar("G", bound=BaseGeometry)


def _transform_geometry(geom: G, fn) -> G:
    def apply(coords: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x, y = fn(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return cast(G, shapely.transform(geom, apply))


def geometry_to_wgs84(geom: G, crs: Crs | str) -> G:
    """Return ``geom`` (or an array of geometries) with coordinates converted from ``crs`` to WGS84."""
    c = parse_crs(crs)
    if c in ("wgs84", "cgcs2000"):
        return geom
    return _transform_geometry(geom, lambda x, y: to_wgs84(x, y, c))


def geometry_from_wgs84(geom: G, crs: Crs | str) -> G:
    """Return ``geom`` with WGS84 coordinates converted to ``crs``."""
    c = parse_crs(crs)
    if c in ("wgs84", "cgcs2000"):
        return geom
    return _transform_geometry(geom, lambda x, y: from_wgs84(x, y, c))
