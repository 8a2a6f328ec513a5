"""Team members and their tracker devices.

Members are records (id, name, phone, role, side, team); those named in a team's record are
kept in step with it by a trigger (migration 0021). A device is bound to one member, and its
key (``jgd_<secret>``, stored as a SHA-256 hash) may only post that device's positions: it is
not an API key, and no other route accepts it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from gis.crs import SUPPORTED_CRS
from gis.errors import InvalidInput, NotFound
from layers.db import Conn, translate_errors

KEY_PREFIX = "jgd_"
DEVICE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def member(conn: Conn, *, team: str, name: str) -> dict[str, Any] | None:
    """The member of ``team`` called ``name``, or with that id; None if there is none."""
    with translate_errors():
        return conn.execute(
            "SELECT id, team, side, name, phone, role, from_roster FROM members"
            " WHERE team = %(team)s AND (name = %(name)s OR id = %(name)s)"
            " ORDER BY (id = %(name)s) DESC LIMIT 1",
            {"team": team, "name": name},
        ).fetchone()


def members(conn: Conn, *, team: str | None = None) -> list[dict[str, Any]]:
    with translate_errors():
        return conn.execute(
            "SELECT id, team, side, name, phone, role, from_roster FROM members"
            " WHERE %(team)s::text IS NULL OR team = %(team)s ORDER BY team, name",
            {"team": team},
        ).fetchall()


def add_member(
    conn: Conn,
    *,
    team: str,
    name: str,
    side: str | None = None,
    phone: str = "",
    role: str = "member",
) -> dict[str, Any]:
    """Create a member of ``team`` (side defaults to the team's own); return it."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("a member needs a name of 1 to 200 characters", {})
    with translate_errors(), conn.transaction():
        t = conn.execute("SELECT code, side, sides FROM teams WHERE code = %s", (team,)).fetchone()
        if t is None:
            raise InvalidInput(f"unknown team {team!r}", {"team": team})
        side = side or t["side"]
        if side not in t["sides"]:
            raise InvalidInput(
                f"team {team} serves side(s) {', '.join(t['sides'])}, not {side}",
                {"team": team, "side": side, "team_sides": list(t["sides"])},
            )
        row = conn.execute(
            "INSERT INTO members (id, team, side, name, phone, role)"
            " VALUES (member_id(%s, %s), %s, %s, %s, %s, %s)"
            " RETURNING id, team, side, name, phone, role, from_roster",
            (team, name, team, side, name, phone, role),
        ).fetchone()
    return dict(row)  # type: ignore[arg-type]


def add_device(
    conn: Conn,
    *,
    team: str,
    member_name: str,
    device_id: str | None = None,
    crs: str = "wgs84",
    name: str = "",
    phone: str = "",
    role: str = "member",
    side: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Bind a new device to the member ``member_name`` of ``team`` (named, or created); return
    (its key, shown once, and the device record). ``device_id`` defaults to eight random
    digits, as Traccar Client makes its own identifiers."""
    if crs not in SUPPORTED_CRS:
        raise InvalidInput(f"unknown crs {crs!r}", {"valid": list(SUPPORTED_CRS)})
    if device_id is None:
        device_id = str(10_000_000 + secrets.randbelow(90_000_000))
    if not DEVICE_ID.fullmatch(device_id):
        raise InvalidInput(
            "a device id is 1 to 64 letters, digits, '.', '_' or '-'", {"id": device_id[:70]}
        )
    secret = secrets.token_urlsafe(24)
    with translate_errors(), conn.transaction():
        m = member(conn, team=team, name=member_name) or add_member(
            conn, team=team, name=member_name, side=side, phone=phone, role=role
        )
        row = conn.execute(
            "INSERT INTO devices (id, member_id, team, side, secret_hash, crs, name)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id, member_id, team, side, crs, name, created_at, revoked_at",
            (device_id, m["id"], m["team"], m["side"], _hash(secret), crs, name),
        ).fetchone()
    rec = dict(row)  # type: ignore[arg-type]
    rec["member"] = m["name"]
    return f"{KEY_PREFIX}{secret}", rec


def verify(conn: Conn, device_id: str, key: str | None) -> dict[str, Any] | None:
    """The live device ``device_id`` if ``key`` is its key; None otherwise (unknown, revoked,
    wrong or missing key)."""
    if not key or not key.startswith(KEY_PREFIX) or not DEVICE_ID.fullmatch(device_id or ""):
        return None
    with translate_errors():
        row = conn.execute(
            "SELECT id, member_id, team, side, crs, secret_hash FROM devices"
            " WHERE id = %s AND revoked_at IS NULL",
            (device_id,),
        ).fetchone()
    if row is None or not hmac.compare_digest(
        bytes(row["secret_hash"]), _hash(key[len(KEY_PREFIX) :])
    ):
        return None
    return {k: row[k] for k in ("id", "member_id", "team", "side", "crs")}


def revoke(conn: Conn, device_id: str) -> None:
    with translate_errors(), conn.transaction():
        row = conn.execute(
            "UPDATE devices SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL RETURNING id",
            (device_id,),
        ).fetchone()
    if row is None:
        raise NotFound(f"no live device {device_id}", {"id": device_id})


def list_devices(conn: Conn, *, team: str | None = None) -> list[dict[str, Any]]:
    with translate_errors():
        return conn.execute(
            "SELECT d.id, d.team, d.side, d.crs, d.name, d.created_at, d.revoked_at,"
            " m.id AS member_id, m.name AS member, l.time AS last_fix"
            " FROM devices d JOIN members m ON m.id = d.member_id"
            " LEFT JOIN device_latest l ON l.device = d.id"
            " WHERE %(team)s::text IS NULL OR d.team = %(team)s ORDER BY d.team, d.created_at",
            {"team": team},
        ).fetchall()
