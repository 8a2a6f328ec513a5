"""Parsing query parameters shared by the case list, the feeds and the map."""

from __future__ import annotations

import math
from datetime import datetime

from api import cursors
from gis.errors import InvalidInput
from gis.instants import in_utc


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """``west,south,east,north`` in WGS84 degrees, or None."""
    if text is None or text == "":
        return None
    parts = text.split(",")
    if len(parts) not in (4, 6):
        raise InvalidInput(
            "bbox must be four numbers: west,south,east,north",
            {"bbox": text[:100], "example": "105.4,30.1,105.7,30.3"},
        )
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise InvalidInput("bbox must contain numbers only", {"bbox": text[:100]}) from None
    if len(nums) == 6:
        nums = [nums[0], nums[1], nums[3], nums[4]]
    w, s, e, n = nums
    if not all(math.isfinite(v) for v in nums) or not (
        -180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90
    ):
        raise InvalidInput(
            "bbox is out of range: longitudes within ±180, latitudes within ±90, south <= north",
            {"bbox": text[:100]},
        )
    return w, s, e, n


def parse_csv(text: str | None, *, name: str, valid: set[str] | None = None) -> list[str]:
    """A comma-separated list; with ``valid``, every item must be one of those."""
    if not text:
        return []
    items = [t.strip() for t in text.split(",") if t.strip()]
    if valid is not None:
        bad = [t for t in items if t not in valid]
        if bad:
            raise InvalidInput(
                f"unknown {name}: {', '.join(b[:40] for b in bad[:5])}",
                {"valid": sorted(valid)},
            )
    return items


def parse_time(text: str | None, *, name: str) -> datetime | None:
    """An ISO 8601 time with a zone, or None; in UTC."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{name} is not an ISO 8601 time",
            {name: text[:60], "example": "2026-11-27T08:00:00+08:00"},
        ) from None
    if t.tzinfo is None:
        raise InvalidInput(f"{name} needs a time zone, e.g. +08:00 or Z", {name: text[:60]})
    return in_utc(t, name=name, text=text)


def encode_cursor(*values: str) -> str:
    """An opaque, signed cursor carrying ``values`` (see ``api.cursors``)."""
    return cursors.sign(values)


def decode_cursor(text: str | None, *, size: int) -> tuple[str, ...] | None:
    """The values of a cursor made by ``encode_cursor``; ``invalid_cursor`` (400) for any other."""
    if not text:
        return None
    return cursors.open_(text, size=size)


def parse_interval(
    text: str, *, name: str = "datetime"
) -> tuple[datetime | None, datetime | None] | datetime:
    """An RFC 3339 instant, or an interval ``start/end`` where either end may be ``..`` or empty
    (open). Returns the instant, or (start, end) with None for an open end."""
    from gis.cql import parse_instant

    text = text.strip()
    if "/" not in text:
        if text in ("", ".."):
            raise InvalidInput(f"{name} is empty", {"example": "2026-11-01T00:00:00Z/.."})
        return parse_instant(text, name=name)
    parts = text.split("/")
    if len(parts) != 2:
        raise InvalidInput(
            f"{name} is an instant or one interval start/end",
            {name: text[:80], "example": "2026-11-01T00:00:00Z/2026-11-30T00:00:00Z"},
        )
    start, end = (None if p in ("", "..") else parse_instant(p, name=name) for p in parts)
    if start is not None and end is not None and start > end:
        raise InvalidInput(f"{name}: the interval ends before it starts", {name: text[:80]})
    return start, end
