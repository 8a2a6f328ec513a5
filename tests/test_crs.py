"""Coordinate conversions: published reference pairs, an independent implementation, round trips."""

from __future__ import annotations

import math

import numpy as np
import prcoords
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString

from gis.crs import (
    bd09_to_gcj02,
    from_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    geometry_to_wgs84,
    parse_crs,
    to_wgs84,
    wgs84_to_gcj02,
)
from gis.errors import UnknownCrs

# Published test vectors of the open eviltransform implementations (MIT): (wgs lat, lng, gcj lat, lng).
EVILTRANSFORM = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),  # Shanghai
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),  # Shenzhen
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),  # Beijing
]
# GCJ-02 -> BD-09, as published alongside the Shanghai vector.
BD09_PAIR = ((121.531541859215, 31.17530398364597), (121.53801568643858, 31.181328606874466))


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Haversine distance in metres (sphere of radius 6,371,008.8 m)."""
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


@pytest.mark.parametrize(("wlat", "wlon", "glat", "glon"), EVILTRANSFORM)
def test_wgs84_to_gcj02_matches_published_vectors(wlat, wlon, glat, glon):
    lon, lat = wgs84_to_gcj02(wlon, wlat)
    assert lon == pytest.approx(glon, abs=1e-9)
    assert lat == pytest.approx(glat, abs=1e-9)


@pytest.mark.parametrize(("wlat", "wlon", "glat", "glon"), EVILTRANSFORM)
def test_gcj02_inverse_is_exact_on_published_vectors(wlat, wlon, glat, glon):
    lon, lat = gcj02_to_wgs84(glon, glat)
    assert metres(lon, lat, wlon, wlat) < 0.01


def test_gcj02_to_bd09_matches_published_pair():
    (glon, glat), (blon, blat) = BD09_PAIR
    lon, lat = gcj02_to_bd09(glon, glat)
    assert (lon, lat) == pytest.approx((blon, blat), abs=1e-9)
    back = bd09_to_gcj02(blon, blat)
    assert metres(*back, glon, glat) < 0.01


def test_offsets_near_anju_tongnan_are_as_documented():
    # DOMAIN.md: about 450 m for GCJ-02 and about 1.05 km for BD-09 around the border.
    lon, lat = 105.56, 30.19
    g = from_wgs84(lon, lat, "gcj02")
    b = from_wgs84(lon, lat, "bd09")
    assert 350 < metres(lon, lat, *g) < 550
    assert 900 < metres(lon, lat, *b) < 1200


lons = st.floats(min_value=73.0, max_value=135.0, allow_nan=False)
lats = st.floats(min_value=18.0, max_value=53.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(lon=lons, lat=lats, crs=st.sampled_from(["gcj02", "bd09", "wgs84", "cgcs2000"]))
def test_round_trip_error_under_half_a_metre(lon, lat, crs):
    x, y = from_wgs84(lon, lat, crs)
    back = to_wgs84(x, y, crs)
    assert metres(*back, lon, lat) < 0.5
    assert metres(*back, lon, lat) < 1e-3  # in fact far better


@settings(max_examples=200, deadline=None)
@given(lon=lons, lat=lats)
def test_agrees_with_independent_prcoords(lon, lat):
    ref = prcoords.wgs_gcj(prcoords.Coords(lat, lon))
    assert wgs84_to_gcj02(lon, lat) == pytest.approx((ref.lon, ref.lat), abs=1e-9)
    ref_bd = prcoords.wgs_bd(prcoords.Coords(lat, lon))
    assert from_wgs84(lon, lat, "bd09") == pytest.approx((ref_bd.lon, ref_bd.lat), abs=1e-9)


def test_outside_china_is_unchanged():
    assert wgs84_to_gcj02(139.6917, 35.6895) == (139.6917, 35.6895)  # Tokyo
    assert gcj02_to_wgs84(-0.1276, 51.5072) == (-0.1276, 51.5072)  # London


def test_vectorised_equals_scalar():
    x = np.array([105.1, 105.5, 105.9])
    y = np.array([30.0, 30.2, 30.4])
    vx, vy = to_wgs84(x, y, "bd09")
    for i in range(3):
        assert (vx[i], vy[i]) == to_wgs84(float(x[i]), float(y[i]), "bd09")


def test_geometry_conversion_moves_every_vertex():
    line = LineString([(105.5, 30.1), (105.6, 30.2)])
    out = geometry_to_wgs84(line, "gcj02")
    for (gx, gy), (wx, wy) in zip(line.coords, out.coords, strict=True):
        assert (wx, wy) == pytest.approx(gcj02_to_wgs84(gx, gy))


@pytest.mark.parametrize("name", ["WGS84", "epsg:4326", "GCJ-02", "bd09", "CGCS2000", None])
def test_parse_crs_accepts_common_spellings(name):
    assert parse_crs(name) in ("wgs84", "cgcs2000", "gcj02", "bd09")


def test_unknown_crs_lists_accepted():
    with pytest.raises(UnknownCrs) as exc:
        parse_crs("utm48")
    assert "gcj02" in exc.value.detail["accepted"]
