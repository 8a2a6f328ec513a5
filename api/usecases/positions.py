"""The positions use-case: fixes from tracker apps and offline batches, one transaction each.

Called by every face alike (``/osmand``, ``/owntracks``, ``POST /api/v1/positions``, the CLI
and the benchmark). The device's key is checked first: an unknown or revoked device, or a wrong
key, is ``UnknownDevice`` (401) whatever else the request says.

- A live fix (``live``) that breaks a rule (too far ahead, older than the retention, outside
  the service area, no location) is dropped and counted, and the call still succeeds: Traccar
  Client resends a refused fix every 30 s for ever, and every fix behind it waits.
- A batch (``batch``) is refused whole when any fix breaks a rule, each refused fix named by
  its index, so that the client can correct and resend it; a batch is idempotent per (device,
  time).
- Fixes with an impossible speed from the previous good fix, or a poor accuracy, are stored
  but flagged, and left out of tracks and coverage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from api.usecases.rounds import run_rounds
from gis import fixes as fx
from gis.errors import DomainError, FixesRefused, InvalidInput
from layers import devices, patrols, positions
from layers.db import Conn

MAX_BATCH = 1000
BACKLOG_DEVICES = 20  # devices a transaction of the patrol worker applies
T = TypeVar("T")
log = logging.getLogger("jointgrid.patrols")


class UnknownDevice(DomainError):
    """Unknown or revoked device, or a wrong key (the faces answer 401, as for bad credentials)."""

    code = "unauthenticated"


class PatrolSettings(Protocol):
    """What the use-case reads of the patrol settings (``api.settings.PatrolSettings``)."""

    retention_days: int
    session_gap_s: float
    max_speed_kmh: float
    max_accuracy_m: float
    future_s: float
    area_buffer_m: float


def _with_partitions(conn: Conn, settings: PatrolSettings, unit: Callable[[], T]) -> T:
    """Run ``unit`` (one transaction); if a fix found no partition for its day, make the
    partitions and run it once more."""
    try:
        return unit()
    except positions.MissingPartition:
        positions.maintain(conn, retention_days=settings.retention_days, days_back=1)
        return unit()


def rules(conn: Conn, settings: PatrolSettings) -> fx.Rules:
    box = positions.service_box(conn)
    return fx.Rules(
        retention=timedelta(days=settings.retention_days),
        future=timedelta(seconds=settings.future_s),
        max_speed_mps=settings.max_speed_kmh / 3.6,
        max_accuracy_m=settings.max_accuracy_m,
        bounds=None if box is None else fx.expand_bounds(box, settings.area_buffer_m),
    )


def device_for(conn: Conn, device_id: str | None, key: str | None) -> dict[str, Any]:
    """The live device whose key this is; ``UnknownDevice`` otherwise."""
    dev = devices.verify(conn, device_id or "", key)
    if dev is None:
        raise UnknownDevice(
            "unknown or revoked device, or a wrong key: give the device id and its key",
            {
                "hint": "the key comes as the `key` query parameter (OsmAnd), the HTTP Basic "
                "password (OwnTracks) or Authorization: Bearer (the batch API)"
            },
        )
    return dev


def live(
    conn: Conn,
    *,
    device_id: str | None,
    key: str | None,
    read: Callable[[str], fx.Fix | None],
    source: str,
    settings: PatrolSettings,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One live fix: ``read(crs)`` gives it from the request (None: no location). Returns
    ``{"device", "stored", "dropped", "flags"}``; raises only for bad credentials or a
    malformed request."""
    now = now or datetime.now(UTC)
    dev = device_for(conn, device_id, key)
    fix = read(dev["crs"])
    out: dict[str, Any] = {"device": dev["id"], "stored": 0, "dropped": None, "flags": []}
    the_rules = rules(conn, settings)
    reason = "no_location" if fix is None else fx.refusal(fix, now=now, rules=the_rules)
    if reason is not None:
        positions.count_dropped(conn, device=dev, reason=reason, day=now)
        out["dropped"] = reason
        return out
    assert fix is not None

    def unit() -> tuple[fx.Fix, dict[str, int]]:
        with conn.transaction():
            prev = positions.previous_good(conn, device=dev["id"], before=fix.time)
            (flagged,) = fx.flag([fix], previous=prev, rules=the_rules)
            got = positions.store(
                conn,
                device=dev,
                fixes=[flagged],
                source=source,
                retention_days=settings.retention_days,
            )
        return flagged, got

    flagged, got = _with_partitions(conn, settings, unit)
    out["stored"] = got["stored"]
    out["flags"] = list(flagged.flags)
    return out


def batch(
    conn: Conn,
    *,
    key: str | None,
    body: Any,
    settings: PatrolSettings,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``{"device": ..., "fixes": [...]}`` from a device: all stored, or none with every refused
    fix named by index (``FixesRefused``)."""
    now = now or datetime.now(UTC)
    device_id = body.get("device") if isinstance(body, dict) else None
    dev = device_for(conn, device_id if isinstance(device_id, str) else None, key)
    items = body.get("fixes")
    if not isinstance(items, list) or not items:
        raise InvalidInput("fixes must be a non-empty list", {"fields": sorted(body)[:10]})
    if len(items) > MAX_BATCH:
        raise InvalidInput(
            f"at most {MAX_BATCH} fixes in one batch", {"got": len(items), "max": MAX_BATCH}
        )
    the_rules = rules(conn, settings)
    # the whole batch at once (numpy), each refused fix named by its index
    read, refused = fx.read_batch(items, crs=dev["crs"], now=now, rules=the_rules)
    if refused:
        raise FixesRefused(
            f"{len(refused)} of {len(items)} fixes refused; nothing was stored",
            {"device": dev["id"], "refused": refused},
        )

    def unit() -> tuple[fx.FixBatch, dict[str, int]]:
        # One statement stores the fixes, the latest fixes and the sessions: in autocommit it
        # is its own transaction, committed before the answer leaves.
        prev = positions.previous_good(conn, device=dev["id"], before=read.time[0])
        flagged = fx.flag_batch(read, previous=prev, rules=the_rules)
        got = positions.store_batch(
            conn,
            device=dev,
            batch=flagged,
            source="batch",
            retention_days=settings.retention_days,
        )
        return flagged, got

    flagged, got = _with_partitions(conn, settings, unit)
    return {
        "device": dev["id"],
        "stored": got["stored"],
        "duplicates": got["duplicates"],
        "flagged": flagged.flagged(),
    }


def mark(
    conn: Conn,
    *,
    key: str | None,
    device_id: str | None,
    kind: str,
    at: Any,
    settings: PatrolSettings,
) -> dict[str, Any]:
    """An explicit start or stop of a device's patrol (now, or at ``at``: ISO 8601 or epoch)."""
    dev = device_for(conn, device_id, key)
    if kind not in ("start", "stop"):
        raise InvalidInput("action must be start or stop", {"action": str(kind)[:20]})
    now = datetime.now(UTC)
    when = fx.parse_time(at, now=now) if at else now
    with conn.transaction():
        patrols.mark(conn, device=dev, kind=kind, at=when, gap_s=settings.session_gap_s)
    return {"device": dev["id"], "action": kind, "at": when.isoformat()}


def apply_backlog_until(
    connect: Callable[[], Conn],
    *,
    stop: threading.Event,
    gap_s: float,
    interval_s: float,
) -> None:
    """The patrol worker: until ``stop`` is set, bring the sessions and the cells up to date
    with the fixes stored since (``layers.patrols.apply_all``), a pass every ``interval_s``
    until the backlog is empty, reconnecting after a lost connection. A pass is transactions
    of ``BACKLOG_DEVICES`` devices each. Fixes that arrive for a device between two passes are
    applied together, by one call."""

    def once(conn: Conn) -> bool:
        patrols.apply_all(conn, gap_s=gap_s, devices=BACKLOG_DEVICES)
        return False

    run_rounds(
        connect, once, stop=stop, idle_s=interval_s, what="applying the patrol backlog", log=log
    )
