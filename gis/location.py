"""Checking a reported coordinate, and placing a point on a side of the border.

Pure: works on ``LocationFacts`` gathered by ``layers.locate``. Distances in metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gis.errors import InvalidCoordinates, OutsideServiceArea
from gis.facts import LocationFacts


def check_lonlat(lon: object, lat: object) -> tuple[float, float]:
    """Return (lon, lat) as floats, or raise ``InvalidCoordinates`` with a hint how to fix it.

    Catches non-numbers, NaN and infinities, out-of-range values, and an apparent lat/lon swap
    (a latitude beyond ±90° whose longitude would be a valid latitude).
    """
    try:
        x = float(lon)  # type: ignore[arg-type]
        y = float(lat)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidCoordinates(
            "lon and lat must be numbers in decimal degrees",
            {"lon": repr(lon)[:50], "lat": repr(lat)[:50], "hint": "e.g. lon=105.6, lat=30.2"},
        ) from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InvalidCoordinates(
            "lon and lat must be finite numbers (got NaN or infinity)",
            {
                "lon": repr(x),
                "lat": repr(y),
                "hint": "send decimal degrees, e.g. lon=105.6, lat=30.2",
            },
        )
    if abs(y) > 90 and abs(x) <= 90 and abs(y) <= 180:
        raise InvalidCoordinates(
            f"latitude {y} is out of range; longitude and latitude look swapped",
            {"lon": x, "lat": y, "hint": f"send lon={y}, lat={x} (longitude first, as in GeoJSON)"},
        )
    if abs(x) > 180 or abs(y) > 90:
        raise InvalidCoordinates(
            "coordinates out of range: longitude must be within ±180 and latitude within ±90",
            {"lon": x, "lat": y, "hint": "send decimal degrees, longitude first"},
        )
    return x, y


@dataclass(frozen=True)
class Placement:
    """Where a point stands relative to the sides.

    ``side`` contains the point (or is the nearest, within the tolerance, when it falls in a
    sliver outside every side). ``distance_to_border_m`` is the distance to the nearest
    territory of any other side: 0 on the line itself.
    """

    side: str
    side_name: str
    on_line: bool
    snapped_m: float
    distance_to_border_m: float | None
    nearest_other_side: str | None
    in_border_zone: bool


def place(
    facts: LocationFacts, *, zone_m: float, tolerance_m: float, preferred_side: str | None = None
) -> Placement:
    """Place the point of ``facts`` on a side; ``OutsideServiceArea`` if it is beyond every side."""
    containing = facts.containing_sides()
    snapped = 0.0
    if containing:
        codes = [s.code for s in containing]
        chain_side = facts.chain[0].code if facts.chain else None
        if preferred_side in codes:
            code = preferred_side
        elif chain_side in codes:
            code = chain_side
        else:
            code = min(codes)
        here = next(s for s in containing if s.code == code)
    else:
        nearest = facts.nearest_side()
        if nearest is None:
            raise OutsideServiceArea("no sides are loaded yet; load the boundary data first", {})
        if nearest.distance_m > tolerance_m:
            raise OutsideServiceArea(
                f"the point is {nearest.distance_m:,.0f} m outside the service area "
                f"(nearest side {nearest.code} {nearest.name})",
                {
                    "distance_m": round(nearest.distance_m, 1),
                    "nearest_side": nearest.code,
                    "hint": "check the coordinates and the declared crs (wgs84, gcj02, bd09)",
                },
            )
        here, snapped = nearest, nearest.distance_m
    others = [s for s in facts.sides if s.code != here.code]
    other = min(others, key=lambda s: (s.distance_m, s.code), default=None)
    distance = None if other is None else (0.0 if len(containing) > 1 else other.distance_m)
    return Placement(
        side=here.code,
        side_name=here.name,
        on_line=len(containing) > 1,
        snapped_m=snapped,
        distance_to_border_m=distance,
        nearest_other_side=None if other is None else other.code,
        in_border_zone=distance is not None and distance <= zone_m,
    )
