"""Position fixes from tracker apps: reading each protocol's fields, and the rules every fix meets.

Pure: no I/O. Times are timezone-aware (UTC), coordinates WGS84 degrees once read, speeds in
metres per second, accuracies in metres.

Protocols:
- Traccar's OsmAnd protocol, query or form fields (``id``, ``lat``, ``lon``, ``timestamp`` in
  epoch seconds or milliseconds or ISO 8601, ``speed`` in **knots**, ``bearing``, ``altitude``,
  ``accuracy`` where Traccar Client sends 0 when it does not know, ``batt`` in percent);
- the same protocol's JSON body (Traccar Client 9 and later, server 6.7 and later):
  ``{"location": {"timestamp", "coords": {"latitude", "longitude", "accuracy", "speed" (m/s),
  "heading", "altitude"}, "battery": {"level" 0..1}, ...}, "device_id"}``;
- OwnTracks' ``_type: location`` JSON: ``lat``, ``lon``, ``tst`` (epoch seconds), ``acc`` (m),
  ``vel`` (**km/h**), ``cog``, ``alt``, ``batt`` (percent);
- our own batch item: ``lon``, ``lat``, ``time`` (ISO 8601 with zone), ``crs``, ``accuracy``
  (m), ``speed`` (m/s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gis.crs import parse_crs, to_wgs84
from gis.errors import InvalidInput
from gis.location import check_lonlat

KNOT_MPS = 1852.0 / 3600.0
KMH_MPS = 1000.0 / 3600.0
EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True)
class Fix:
    """One position of one device, in WGS84."""

    lon: float
    lat: float
    time: datetime
    accuracy_m: float | None = None
    speed_mps: float | None = None
    bearing: float | None = None
    altitude_m: float | None = None
    battery: float | None = None  # percent
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rules:
    """What a fix must meet (``PatrolSettings`` gives the values)."""

    retention: timedelta
    future: timedelta = timedelta(minutes=5)
    max_speed_mps: float = 55.0  # about 200 km/h: faster than any patrol, road or river
    max_accuracy_m: float = 100.0
    bounds: tuple[float, float, float, float] | None = None  # the service area's box + buffer
    extra: dict[str, Any] = field(default_factory=dict)


# -- reading -------------------------------------------------------------------------------


def _num(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{name} must be a number", {name: value})
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a number", {name: str(value)[:40]}) from None
    if not math.isfinite(x):
        raise InvalidInput(f"{name} must be a finite number", {name: str(value)[:40]})
    return x


def parse_time(value: Any, *, now: datetime) -> datetime:
    """A fix time: epoch seconds or milliseconds (as Traccar reads them: below 2^31 is seconds),
    ISO 8601 (a time without zone is UTC), or ``yyyy-MM-dd HH:mm:ss`` (UTC); none is now."""
    if value is None or value == "":
        return now
    if isinstance(value, bool):
        raise InvalidInput("the time must be epoch seconds or ISO 8601", {"time": value})
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        x = float(value)
        if not math.isfinite(x) or x < 0:
            raise InvalidInput("the time must be epoch seconds or ISO 8601", {"time": str(value)})
        if x >= 2**31 - 1:
            x /= 1000.0
        try:
            return datetime.fromtimestamp(x, UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidInput("the time is out of range", {"time": str(value)[:40]}) from None
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            t = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                "the time must be epoch seconds or ISO 8601",
                {"time": value[:40], "hint": "e.g. 2026-12-01T08:30:00+08:00"},
            ) from None
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)
    raise InvalidInput("the time must be epoch seconds or ISO 8601", {"time": str(value)[:40]})


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _point(lon: Any, lat: Any, crs: str) -> tuple[float, float]:
    x, y = check_lonlat(lon, lat)
    wx, wy = to_wgs84(x, y, parse_crs(crs))
    return float(wx), float(wy)


def _accuracy(value: Any) -> float | None:
    """Accuracy in metres; 0 or less means unknown (Traccar Client sends 0 when it has none)."""
    a = _num(value, "accuracy")
    return a if a is not None and a > 0 else None


def osmand_query(params: Mapping[str, str], *, crs: str, now: datetime) -> Fix | None:
    """The fix of an OsmAnd request's fields (query or form); None when it carries no
    location (a heartbeat). ``speed`` is in knots, as Traccar reads it."""
    if params.get("location") and not (params.get("lat") or params.get("lon")):
        lat, _, lon = params["location"].partition(",")
    else:
        lat, lon = params.get("lat", ""), params.get("lon", "")
    if lat == "" and lon == "":
        return None
    x, y = _point(lon, lat, crs)
    speed = _num(params.get("speed"), "speed")
    return Fix(
        lon=x,
        lat=y,
        time=parse_time(params.get("timestamp"), now=now),
        accuracy_m=_accuracy(params.get("accuracy")),
        speed_mps=None if speed is None else speed * KNOT_MPS,
        bearing=_num(params.get("bearing", params.get("heading")), "bearing"),
        altitude_m=_num(params.get("altitude"), "altitude"),
        battery=_num(params.get("batt"), "batt"),
    )


def osmand_json(body: Any, *, crs: str, now: datetime) -> tuple[str, Fix | None]:
    """(device id, fix) of the OsmAnd JSON body of Traccar Client 9+; the speed there is m/s."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", {})
    device = body.get("device_id")
    if not isinstance(device, str | int) or isinstance(device, bool) or str(device) == "":
        raise InvalidInput("device_id is missing", {"fields": sorted(body)[:20]})
    loc = body.get("location")
    if isinstance(loc, list):  # a batched sync sends a list; this reads its last location
        loc = loc[-1] if loc else None
    if loc is None:
        return str(device), None
    if not isinstance(loc, dict) or not isinstance(loc.get("coords"), dict):
        raise InvalidInput("location.coords is missing", {})
    c = loc["coords"]
    if c.get("latitude") is None and c.get("longitude") is None:
        return str(device), None
    x, y = _point(c.get("longitude"), c.get("latitude"), crs)
    raw_battery = loc.get("battery")
    battery: dict[str, Any] = raw_battery if isinstance(raw_battery, dict) else {}
    level = _num(battery.get("level"), "battery.level")
    speed = _num(c.get("speed"), "speed")
    return str(device), Fix(
        lon=x,
        lat=y,
        time=parse_time(loc.get("timestamp"), now=now),
        accuracy_m=_accuracy(c.get("accuracy")),
        speed_mps=None if speed is None or speed < 0 else speed,  # -1: unknown
        bearing=_num(c.get("heading"), "heading"),
        altitude_m=_num(c.get("altitude"), "altitude"),
        battery=None if level is None or level < 0 else level * 100.0,
    )


def owntracks(body: Mapping[str, Any], *, crs: str, now: datetime) -> Fix:
    """The fix of an OwnTracks ``_type: location`` message (``vel`` in km/h)."""
    if "lat" not in body or "lon" not in body:
        raise InvalidInput("a location needs lat and lon", {"fields": sorted(body)[:20]})
    x, y = _point(body.get("lon"), body.get("lat"), crs)
    vel = _num(body.get("vel"), "vel")
    return Fix(
        lon=x,
        lat=y,
        time=parse_time(body.get("tst"), now=now),
        accuracy_m=_accuracy(body.get("acc")),
        speed_mps=None if vel is None or vel < 0 else vel * KMH_MPS,
        bearing=_num(body.get("cog"), "cog"),
        altitude_m=_num(body.get("alt"), "alt"),
        battery=_num(body.get("batt"), "batt"),
    )


def batch_item(item: Any, *, crs: str, now: datetime) -> Fix:
    """One fix of ``POST /api/v1/positions``: ``lon``, ``lat``, ``time`` required."""
    if not isinstance(item, dict):
        raise InvalidInput("a fix must be an object with lon, lat and time", {})
    unknown = set(item) - {"lon", "lat", "time", "crs", "accuracy", "speed"}
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {sorted(unknown)[:5]}", {"unknown": sorted(unknown)[:5]}
        )
    if item.get("time") in (None, ""):
        raise InvalidInput("each fix needs its own time (ISO 8601 with zone)", {})
    if isinstance(item.get("time"), str) and not _is_number(item["time"]):
        t = parse_time(item["time"], now=now)
        if not _has_zone(item["time"]):
            raise InvalidInput(
                "the time needs a zone, e.g. +08:00 or Z", {"time": item["time"][:40]}
            )
    else:
        t = parse_time(item.get("time"), now=now)
    speed = _num(item.get("speed"), "speed")
    the_crs = item.get("crs") or crs
    if not isinstance(the_crs, str):
        raise InvalidInput("crs must be a name such as wgs84, gcj02 or bd09", {})
    x, y = _point(item.get("lon"), item.get("lat"), the_crs)
    return Fix(
        lon=x,
        lat=y,
        time=t,
        accuracy_m=_accuracy(item.get("accuracy")),
        speed_mps=None if speed is None or speed < 0 else speed,
    )


def _has_zone(text: str) -> bool:
    t = text.strip()
    if t.endswith(("Z", "z")):
        return True
    try:
        return datetime.fromisoformat(t).tzinfo is not None
    except ValueError:
        return False


# -- rules ---------------------------------------------------------------------------------


def refusal(fix: Fix, *, now: datetime, rules: Rules) -> str | None:
    """Why a fix is refused, or None: ``future``, ``too_old`` or ``outside_service_area``."""
    if fix.time > now + rules.future:
        return "future"
    if fix.time < now - rules.retention:
        return "too_old"
    if rules.bounds is not None:
        minx, miny, maxx, maxy = rules.bounds
        if not (minx <= fix.lon <= maxx and miny <= fix.lat <= maxy):
            return "outside_service_area"
    return None


REASONS = {
    "future": "the fix's time is more than a few minutes in the future (check the device clock)",
    "too_old": "the fix is older than the retention of positions",
    "outside_service_area": "the fix is outside the service area",
}


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (spherical, mean radius): enough to judge a speed."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def flag(fixes: list[Fix], *, previous: Fix | None, rules: Rules) -> list[Fix]:
    """The fixes (sorted by time) with their flags: ``accuracy`` for an accuracy worse than the
    rule, ``speed`` for an impossible speed from the previous good fix (flagged fixes are not
    a base for the next, so one wild fix does not flag the good ones after it)."""
    out: list[Fix] = []
    base = previous
    for f in sorted(fixes, key=lambda f: f.time):
        flags: list[str] = []
        if f.accuracy_m is not None and f.accuracy_m > rules.max_accuracy_m:
            flags.append("accuracy")
        if base is not None and f.time > base.time:
            dt = (f.time - base.time).total_seconds()
            if distance_m(base.lon, base.lat, f.lon, f.lat) / dt > rules.max_speed_mps:
                flags.append("speed")
        g = replace(f, flags=tuple(flags))
        if not flags:
            base = g
        out.append(g)
    return out


def expand_bounds(
    box: tuple[float, float, float, float], buffer_m: float
) -> tuple[float, float, float, float]:
    """A lon/lat box grown by ``buffer_m`` metres on every side (degrees, WGS84)."""
    minx, miny, maxx, maxy = box
    dlat = buffer_m / 111_320.0
    coslat = max(0.01, math.cos(math.radians(max(abs(miny), abs(maxy)))))
    dlon = buffer_m / (111_320.0 * coslat)
    return (minx - dlon, miny - dlat, maxx + dlon, maxy + dlat)
