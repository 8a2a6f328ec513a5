"""Duty rosters: is a team on duty at a given moment?

A roster is ``{"timezone": "Asia/Shanghai", "shifts": [{"name", "days", "start", "end"}]}``
with ISO weekdays (1 = Monday) and local ``HH:MM`` times. A shift whose end is not after its
start runs overnight into the next day, e.g. 20:00-08:00.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TZ = "Asia/Shanghai"


def _hm(text: str) -> time:
    h, m = str(text).split(":")[:2]
    hour = int(h)
    return time(23, 59, 59, 999_999) if hour == 24 else time(hour, int(m))


def on_duty(roster: dict[str, Any] | None, at: datetime) -> bool:
    """True when some shift of ``roster`` covers ``at`` (a timezone-aware datetime)."""
    if not roster:
        return False
    try:
        tz = ZoneInfo(str(roster.get("timezone") or DEFAULT_TZ))
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo(DEFAULT_TZ)
    local = at.astimezone(tz)
    today = local.isoweekday()
    yesterday = (local - timedelta(days=1)).isoweekday()
    now = local.time()
    for shift in roster.get("shifts") or ():
        try:
            days = {int(d) for d in shift.get("days", range(1, 8))}
            start, end = _hm(shift["start"]), _hm(shift["end"])
        except (KeyError, ValueError, TypeError):
            continue  # a malformed shift never puts a team on duty
        if start < end:
            if today in days and start <= now < end:
                return True
        else:  # overnight: from start on a listed day until end the next morning
            if today in days and now >= start:
                return True
            if yesterday in days and now < end:
                return True
    return False
