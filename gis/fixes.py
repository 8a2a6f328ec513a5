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

import numpy as np
import numpy.typing as npt

from gis.crs import parse_crs, to_wgs84
from gis.errors import InvalidInput
from gis.instants import in_utc
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
        return in_utc(t if t.tzinfo else t.replace(tzinfo=UTC), name="time", text=value)
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
    """Why a fix is refused, or None: ``future``, ``too_old`` or ``outside_service_area``
    (``refusals`` for a batch of one)."""
    return refusals(FixBatch.of([fix]), now=now, rules=rules)[0]


REASONS = {
    "future": "the fix's time is more than a few minutes in the future (check the device clock)",
    "too_old": "the fix is older than the retention of positions",
    "outside_service_area": "the fix is outside the service area",
}


def flag(fixes: list[Fix], *, previous: Fix | None, rules: Rules) -> list[Fix]:
    """The fixes (sorted by time) with their flags: ``accuracy`` for an accuracy worse than the
    rule, ``speed`` for an impossible speed from the previous good fix (flagged fixes are not
    a base for the next, so one wild fix does not flag the good ones after it). ``flag_batch``
    for a batch of these fixes."""
    ordered = sorted(fixes, key=lambda f: f.time)
    flagged = flag_batch(FixBatch.of(ordered), previous=previous, rules=rules)
    return [replace(f, flags=flagged.flags(k)) for k, f in enumerate(ordered)]


def expand_bounds(
    box: tuple[float, float, float, float], buffer_m: float
) -> tuple[float, float, float, float]:
    """A lon/lat box grown by ``buffer_m`` metres on every side (degrees, WGS84)."""
    minx, miny, maxx, maxy = box
    dlat = buffer_m / 111_320.0
    coslat = max(0.01, math.cos(math.radians(max(abs(miny), abs(maxy)))))
    dlon = buffer_m / (111_320.0 * coslat)
    return (minx - dlon, miny - dlat, maxx + dlon, maxy + dlat)


# -- batches as columns --------------------------------------------------------------------
#
# ``POST /api/v1/positions`` reads up to a thousand fixes at once. Reading each into a ``Fix``
# and converting its coordinates one at a time was most of the batch's Python time; here a
# well-formed fix costs a few dict look-ups, and the coordinates, the rules and the flags are
# computed for the whole batch with numpy. A fix that is not plainly well-formed goes through
# ``batch_item``, so that its error (or its reading of an unusual value) is the same as ever.

Floats = npt.NDArray[np.float64]
BATCH_FIELDS = frozenset({"lon", "lat", "time", "crs", "accuracy", "speed"})


@dataclass(frozen=True)
class FixBatch:
    """One device's accepted fixes as columns, sorted by time. ``index`` is each fix's place in
    the request; NaN is an unknown accuracy or speed; ``flag_accuracy`` and ``flag_speed`` are
    the flags of ``flag_batch`` (all False before)."""

    index: npt.NDArray[np.int64]
    time: list[datetime]
    epoch: Floats
    lon: Floats
    lat: Floats
    accuracy_m: Floats
    speed_mps: Floats
    flag_accuracy: npt.NDArray[np.bool_]
    flag_speed: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def of(cls, fixes: list[Fix]) -> FixBatch:
        """The batch of fixes already read (the live protocols' one fix), in their order."""
        m = len(fixes)
        return cls(
            index=np.arange(m, dtype=np.int64),
            time=[f.time for f in fixes],
            epoch=np.array([f.time.timestamp() for f in fixes], dtype=np.float64),
            lon=np.array([f.lon for f in fixes], dtype=np.float64),
            lat=np.array([f.lat for f in fixes], dtype=np.float64),
            accuracy_m=np.array([_nan(f.accuracy_m) for f in fixes], dtype=np.float64),
            speed_mps=np.array([_nan(f.speed_mps) for f in fixes], dtype=np.float64),
            flag_accuracy=np.zeros(m, dtype=bool),
            flag_speed=np.zeros(m, dtype=bool),
        )

    def flagged(self) -> list[dict[str, Any]]:
        """``{"index", "flags"}`` of each flagged fix, in time order."""
        marks = np.flatnonzero(self.flag_accuracy | self.flag_speed)
        return [{"index": int(self.index[k]), "flags": list(self.flags(int(k)))} for k in marks]

    def flags(self, k: int) -> tuple[str, ...]:
        """The flags of the ``k``-th fix (in time order), as ``Fix.flags`` names them."""
        return tuple(
            name
            for name, on in (("accuracy", self.flag_accuracy[k]), ("speed", self.flag_speed[k]))
            if on
        )


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def refusals(batch: FixBatch, *, now: datetime, rules: Rules) -> list[str | None]:
    """The rule refusing each fix of ``batch`` (``future``, ``too_old`` or
    ``outside_service_area``), or None where none does."""
    return _refused_by(batch.epoch, batch.lon, batch.lat, now=now, rules=rules)


def _refused_by(
    epoch: Floats, x: Floats, y: Floats, *, now: datetime, rules: Rules
) -> list[str | None]:
    now_s = now.timestamp()
    future = epoch > now_s + rules.future.total_seconds()
    old = ~future & (epoch < now_s - rules.retention.total_seconds())
    outside = np.zeros(len(epoch), dtype=bool)
    if rules.bounds is not None:
        minx, miny, maxx, maxy = rules.bounds
        outside = ~future & ~old & ~((x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy))
    out: list[str | None] = [None] * len(epoch)
    for reason, mask in (("future", future), ("too_old", old), ("outside_service_area", outside)):
        for k in np.flatnonzero(mask):
            out[k] = reason
    return out


def _plain_number(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


@dataclass
class _Columns:
    """The fixes of a batch as read, before the coordinates and the rules: each one's place
    in the request, time, coordinates (in ``crss``, or WGS84 where ``wgs``), accuracy and
    speed (NaN: unknown); and the fixes refused as malformed."""

    idx: list[int]
    times: list[datetime]
    xs: list[float]
    ys: list[float]
    acc: list[float]
    spd: list[float]
    crss: list[str]
    wgs: npt.NDArray[np.bool_]
    refused: list[dict[str, Any]]


def _read_columns(items: list[Any], *, crs: str, now: datetime) -> _Columns:
    """Read each fix of ``items``: a plainly well-formed one by a few dict look-ups, any other
    through ``batch_item`` (which words its error, or reads an unusual value)."""
    n = len(items)
    idx: list[int] = []
    times: list[datetime] = []
    xs: list[float] = []
    ys: list[float] = []
    acc: list[float] = []
    spd: list[float] = []
    crss: list[str] = []
    wgs = np.zeros(n, dtype=bool)  # already WGS84 (read by ``batch_item``)
    refused: list[dict[str, Any]] = []
    nan = math.nan

    def slow(i: int, item: Any) -> None:
        try:
            f = batch_item(item, crs=crs, now=now)
        except InvalidInput as exc:
            refused.append({"index": i, "code": exc.code, "message": exc.message})
            return
        wgs[len(idx)] = True
        idx.append(i)
        times.append(f.time)
        xs.append(f.lon)
        ys.append(f.lat)
        acc.append(nan if f.accuracy_m is None else f.accuracy_m)
        spd.append(nan if f.speed_mps is None else f.speed_mps)
        crss.append("wgs84")

    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.keys() <= BATCH_FIELDS:
            slow(i, item)
            continue
        t_raw, lon, lat = item.get("time"), item.get("lon"), item.get("lat")
        a, sp, c = item.get("accuracy"), item.get("speed"), item.get("crs")
        if not (
            isinstance(t_raw, str)
            and lon is not None
            and lat is not None
            and _plain_number(lon)
            and _plain_number(lat)
            and _plain_number(a)
            and _plain_number(sp)
            and (c is None or isinstance(c, str))
        ):
            slow(i, item)
            continue
        try:
            t = datetime.fromisoformat(t_raw)
            if t.tzinfo is None:
                raise ValueError  # a number, or a time without zone: ``batch_item`` says which
            t = t.astimezone(UTC)
        except (ValueError, OverflowError):  # out of the calendar in UTC: ``batch_item`` too
            slow(i, item)
            continue
        idx.append(i)
        times.append(t)
        xs.append(float(lon))
        ys.append(float(lat))
        acc.append(nan if a is None or a <= 0 else float(a))  # 0 or less: unknown
        spd.append(nan if sp is None or sp < 0 else float(sp))
        crss.append(c or crs)

    return _Columns(idx, times, xs, ys, acc, spd, crss, wgs, refused)


def read_batch(
    items: list[Any], *, crs: str, now: datetime, rules: Rules
) -> tuple[FixBatch, list[dict[str, Any]]]:
    """The fixes of a batch and the refused ones (``{"index", "code", "message"}``, by index):
    malformed fixes (as ``batch_item`` says), fixes a rule refuses (``refusal``) and a second
    fix of the same time (``duplicate_time``). Accepted fixes come back sorted by time."""
    cols = _read_columns(items, crs=crs, now=now)
    idx, times, crss, wgs, refused = cols.idx, cols.times, cols.crss, cols.wgs, cols.refused
    xs, ys, acc, spd = cols.xs, cols.ys, cols.acc, cols.spd
    x = np.array(xs, dtype=np.float64)
    y = np.array(ys, dtype=np.float64)
    keep = np.ones(len(idx), dtype=bool)
    wgs = wgs[: len(idx)]
    # coordinates out of range or not finite: ``batch_item`` words the error
    bad = ~wgs & ~(np.isfinite(x) & np.isfinite(y) & (np.abs(x) <= 180) & (np.abs(y) <= 90))
    for k in np.flatnonzero(bad):
        keep[k] = False
        slow_err = _error_of(items[idx[k]], crs=crs, now=now)
        if slow_err is not None:
            refused.append({"index": idx[k], **slow_err})
    for name in set(crss):
        sel = np.flatnonzero(
            keep & ~wgs & (np.array(crss) == name)
        )  # the fixes declared in this system
        if not len(sel):
            continue
        try:
            the_crs = parse_crs(name)
        except InvalidInput as exc:
            for k in sel:
                keep[k] = False
                refused.append({"index": idx[k], "code": exc.code, "message": exc.message})
            continue
        if the_crs in ("gcj02", "bd09"):
            x[sel], y[sel] = to_wgs84(x[sel], y[sel], the_crs)

    epoch = np.array([t.timestamp() for t in times], dtype=np.float64)
    for j, reason in enumerate(_refused_by(epoch, x, y, now=now, rules=rules)):
        if reason is not None and keep[j]:
            keep[j] = False
            refused.append({"index": idx[j], "code": reason, "message": REASONS[reason]})
    seen: dict[datetime, int] = {}
    for k in np.flatnonzero(keep):
        first = seen.setdefault(times[k], idx[k])
        if first != idx[k]:
            refused.append(
                {
                    "index": idx[k],
                    "code": "duplicate_time",
                    "message": f"the same time as fix {first}: one fix per time",
                }
            )
    refused.sort(key=lambda r: r["index"])
    sel = np.flatnonzero(keep)
    sel = sel[np.argsort(epoch[sel], kind="stable")]
    m = len(sel)
    out = FixBatch(
        index=np.array(idx, dtype=np.int64)[sel] if m else np.zeros(0, dtype=np.int64),
        time=[times[k] for k in sel],
        epoch=epoch[sel],
        lon=x[sel],
        lat=y[sel],
        accuracy_m=np.array(acc, dtype=np.float64)[sel] if m else np.zeros(0),
        speed_mps=np.array(spd, dtype=np.float64)[sel] if m else np.zeros(0),
        flag_accuracy=np.zeros(m, dtype=bool),
        flag_speed=np.zeros(m, dtype=bool),
    )
    return out, refused


def _error_of(item: Any, *, crs: str, now: datetime) -> dict[str, str] | None:
    try:
        batch_item(item, crs=crs, now=now)
    except InvalidInput as exc:
        return {"code": exc.code, "message": exc.message}
    return None


def distances_m(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> Any:
    """Great-circle distances in metres (spherical, mean radius: enough to judge a speed), of
    arrays or of single numbers."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))


def flag_batch(batch: FixBatch, *, previous: Fix | None, rules: Rules) -> FixBatch:
    """``flag`` for a batch: the same flags, computed for the whole batch at once. Speeds are
    judged between neighbours; only when one is flagged (a flagged fix is no base for the next)
    does it walk the fixes one by one."""
    m = len(batch)
    if m == 0:
        return batch
    fa = batch.accuracy_m > rules.max_accuracy_m  # NaN (unknown) compares False
    lon0 = np.empty(m)
    lat0 = np.empty(m)
    t0 = np.empty(m)
    lon0[1:], lat0[1:], t0[1:] = batch.lon[:-1], batch.lat[:-1], batch.epoch[:-1]
    if previous is not None:
        lon0[0], lat0[0], t0[0] = previous.lon, previous.lat, previous.time.timestamp()
    else:
        lon0[0], lat0[0], t0[0] = batch.lon[0], batch.lat[0], math.inf
    dt = batch.epoch - t0
    with np.errstate(divide="ignore", invalid="ignore"):
        fast = (dt > 0) & (
            distances_m(lon0, lat0, batch.lon, batch.lat) / np.where(dt > 0, dt, 1.0)
            > rules.max_speed_mps
        )
    if not fa.any() and not fast.any():
        return replace(batch, flag_accuracy=fa, flag_speed=fast)
    # one flagged fix changes the base of the next: walk them as ``flag`` does
    fs = np.zeros(m, dtype=bool)
    base = None if previous is None else (previous.lon, previous.lat, previous.time.timestamp())
    for k in range(m):
        t, x, y = float(batch.epoch[k]), float(batch.lon[k]), float(batch.lat[k])
        if base is not None and t > base[2]:
            fs[k] = distances_m(base[0], base[1], x, y) / (t - base[2]) > rules.max_speed_mps
        if not (fa[k] or fs[k]):
            base = (x, y, t)
    return replace(batch, flag_accuracy=fa, flag_speed=fs)
