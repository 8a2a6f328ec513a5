"""Duty rosters: is a team on duty at a given moment?

A roster is ``{"timezone": "Asia/Shanghai", "shifts": [{"name", "days", "start", "end"}]}``
with ISO weekdays (1 = Monday) and local ``HH:MM`` times. A shift whose end is not after its
start runs overnight into the next day, e.g. 20:00-08:00.
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TZ = "Asia/Shanghai"


def _hm(text: str) -> time:
    h, m = str(text).split(":")[:2]
    hour = int(h)
    return time(23, 59, 59, 999_999) if hour == 24 else time(hour, int(m))


def _zone(roster: dict[str, Any]) -> ZoneInfo:
    try:
        return ZoneInfo(str(roster.get("timezone") or DEFAULT_TZ))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TZ)


def on_duty(roster: dict[str, Any] | None, at: datetime) -> bool:
    """True when some shift of ``roster`` covers ``at`` (a timezone-aware datetime)."""
    if not roster:
        return False
    local = at.astimezone(_zone(roster))
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


class DutyMemo:
    """``on_duty`` memoised per (roster, local weekday and minute): for batches of decisions.

    A roster's answer depends only on its content and on the local weekday and time, and shift
    boundaries are whole minutes (``24:00`` ends at 23:59:59.999999: that last second is
    computed directly), so every instant of one local minute of the week has the same answer.
    Rosters with the same content share their answers (a province has a handful of distinct
    rosters for hundreds of teams). Same answers as ``on_duty``.
    """

    def __init__(self) -> None:
        self._memo: dict[tuple[str, int, int, int], bool] = {}
        self._rosters: dict[int, tuple[dict[str, Any], str, ZoneInfo]] = {}
        self._last: tuple[datetime, ZoneInfo, datetime] | None = None

    def __call__(self, roster: dict[str, Any] | None, at: datetime) -> bool:
        if not roster:
            return False
        known = self._rosters.get(id(roster))
        if known is None:
            content = json.dumps(roster, sort_keys=True, default=str)
            known = self._rosters[id(roster)] = (roster, content, _zone(roster))
        _, content, zone = known
        last = self._last
        if last is not None and last[0] is at and last[1] is zone:
            local = last[2]
        else:
            local = at.astimezone(zone)
            self._last = (at, zone, local)
        if local.hour == 23 and local.minute == 59 and local.second == 59:
            return on_duty(roster, at)  # 24:00 ends a microsecond before midnight
        key = (content, local.isoweekday(), local.hour, local.minute)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = on_duty(roster, at)
        return hit
