"""Instants read from people and clients, held in UTC.

An ISO 8601 offset may be up to ±23:59, where PostgreSQL's ``timestamptz`` input takes only
±15:59, and a time near year 1 or 9999 may leave the calendar once moved to UTC. Every parsed
instant goes through ``in_utc`` before it is used or stored, so that either it is a UTC time
any layer can hold, or the caller is told which value is out of range.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gis.errors import InvalidInput


def in_utc(t: datetime, *, name: str, text: str) -> datetime:
    """``t`` (aware) in UTC; ``InvalidInput`` naming ``name`` if it is outside the calendar."""
    try:
        return t.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            f"{name} is too far in the past or future: out of range once moved to UTC",
            {name: text[:60], "example": "2026-11-27T08:00:00+08:00"},
        ) from None
