"""API keys and page sessions. Secrets are stored only as SHA-256 hashes.

A key reads ``jg_<id>_<secret>``: the id is public (it names the key in logs and audit events),
the secret is 32 random bytes. Being high-entropy, one SHA-256 is enough to store it safely.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg

from gis.errors import InvalidInput, NotFound
from layers.db import Conn, translate_errors

ROLES = ("grid_worker", "team_member", "operator", "admin", "feed")
PREFIX = "jg_"
# Revoking a key or closing a session is announced on this channel (in the same transaction),
# so every server process drops what it cached about keys and sessions at once.
CHANNEL = "jointgrid_keys"
LISTENER = "jointgrid-revocations"  # the listening connection's application_name
log = logging.getLogger("jointgrid")


def _announce(conn: Conn, what: str) -> None:
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, what))


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create(
    conn: Conn, *, role: str, side: str | None, team: str | None = None, name: str = ""
) -> tuple[str, dict[str, Any]]:
    """Create a key; return (the full key, shown once, and its stored record)."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}", {"valid": list(ROLES)})
    if role not in ("admin", "feed") and not side:
        raise InvalidInput(f"a {role} key needs --side (the district code it acts for)")
    if role == "team_member" and not team:
        raise InvalidInput("a team_member key needs --team (the team code)")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with translate_errors(), conn.transaction():
        if side is not None:
            ok = conn.execute(
                "SELECT 1 FROM areas WHERE code = %s AND level = 'district'", (side,)
            ).fetchone()
            if not ok:
                raise InvalidInput(f"unknown side {side!r}: give a district code that is loaded")
        if team is not None:
            found = conn.execute("SELECT sides FROM teams WHERE code = %s", (team,)).fetchone()
            if not found:
                raise InvalidInput(f"unknown team {team!r}")
            # A team member acts for a side its team serves: a key of a Tongnan-only team
            # acting for Anju would move Anju's sign-offs while reading only Tongnan's cases.
            if role == "team_member" and side not in found["sides"]:
                raise InvalidInput(
                    f"team {team} serves side(s) {', '.join(found['sides'])}, not {side}: "
                    f"give --side as one of its sides",
                    {"team": team, "side": side, "team_sides": list(found["sides"])},
                )
        row = conn.execute(
            "INSERT INTO api_keys (id, secret_hash, role, side, team, name)"
            " VALUES (%s, %s, %s, %s, %s, %s)"
            " RETURNING id, role, side, team, name, created_at, revoked_at",
            (key_id, _hash(secret), role, side, team, name),
        ).fetchone()
    return f"{PREFIX}{key_id}_{secret}", dict(row)  # type: ignore[arg-type]


def verify(conn: Conn, token: str) -> dict[str, Any] | None:
    """The live key record for a full key, or None (unknown, wrong secret or revoked)."""
    if not token.startswith(PREFIX) or token.count("_") < 2:
        return None
    key_id, _, secret = token[len(PREFIX) :].partition("_")
    with translate_errors():
        row = conn.execute(
            "SELECT id, secret_hash, role, side, team, name FROM api_keys"
            " WHERE id = %s AND revoked_at IS NULL",
            (key_id,),
        ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), _hash(secret)):
        return None
    return {k: row[k] for k in ("id", "role", "side", "team", "name")}


def revoke(conn: Conn, key_id: str) -> None:
    with translate_errors(), conn.transaction():
        row = conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL RETURNING id",
            (key_id,),
        ).fetchone()
        conn.execute("DELETE FROM sessions WHERE key_id = %s", (key_id,))
        _announce(conn, f"key:{key_id}")  # delivered when the revocation commits
    if row is None:
        raise NotFound(f"no live key {key_id}", {"id": key_id})


def list_keys(conn: Conn) -> list[dict[str, Any]]:
    with translate_errors():
        return conn.execute(
            "SELECT id, role, side, team, name, created_at, revoked_at FROM api_keys ORDER BY created_at"
        ).fetchall()


def any_admin(conn: Conn) -> bool:
    with translate_errors():
        return (
            conn.execute(
                "SELECT 1 FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL LIMIT 1"
            ).fetchone()
            is not None
        )


def open_session(conn: Conn, key_id: str, *, hours: float = 12) -> tuple[str, str]:
    """Start a page session for a key; return (cookie value, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    with translate_errors(), conn.transaction():
        conn.execute(
            "INSERT INTO sessions (id_hash, key_id, csrf, expires_at) VALUES (%s, %s, %s, %s)",
            (_hash(token), key_id, csrf, datetime.now().astimezone() + timedelta(hours=hours)),
        )
    return token, csrf


def session(conn: Conn, token: str) -> dict[str, Any] | None:
    """The key record and CSRF token behind a live session cookie, or None."""
    with translate_errors():
        row = conn.execute(
            "SELECT k.id, k.role, k.side, k.team, k.name, s.csrf FROM sessions s"
            " JOIN api_keys k ON k.id = s.key_id"
            " WHERE s.id_hash = %s AND s.expires_at > now() AND k.revoked_at IS NULL",
            (_hash(token),),
        ).fetchone()
    return None if row is None else dict(row)


def close_session(conn: Conn, token: str) -> None:
    """End a page session on the server; every server process forgets it at once."""
    with translate_errors(), conn.transaction():
        conn.execute("DELETE FROM sessions WHERE id_hash = %s", (_hash(token),))
        _announce(conn, "session")


def listen(
    conninfo: Callable[[], str],
    *,
    on_change: Callable[[str], None],
    on_connected: Callable[[bool], None],
    stop: threading.Event,
    retry_s: float = 1.0,
    ping_s: float = 10.0,
) -> None:
    """Run until ``stop`` is set: call ``on_change(payload)`` for every key revoked or session
    closed (``CHANNEL``), on a connection of its own.

    ``on_connected(True)`` is called once listening (after a reconnection too, when changes
    may have been missed), ``on_connected(False)`` whenever the connection is lost; it is then
    made again at once and then every ``retry_s`` seconds (a database restart, a new address
    from ``conninfo``). An idle connection is checked every ``ping_s`` seconds, so a silently
    dead one is noticed.
    """
    delay = 0.05  # the first retry comes at once: the database may be up (a lost connection)
    while not stop.is_set():
        try:
            with psycopg.connect(
                conninfo(), autocommit=True, connect_timeout=5, application_name=LISTENER
            ) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                on_connected(True)
                delay = 0.05
                idle = 0.0
                while not stop.is_set():
                    got = False
                    for note in conn.notifies(timeout=1.0):
                        got = True
                        on_change(note.payload)
                    idle = 0.0 if got else idle + 1.0
                    if idle >= ping_s:
                        conn.execute("SELECT 1")
                        idle = 0.0
        except psycopg.Error as exc:
            log.warning("the key revocation listener lost the database (%s); retrying", exc)
        except Exception:  # keep listening whatever happens; the cache is off meanwhile
            log.exception("the key revocation listener failed; retrying")
        on_connected(False)
        stop.wait(delay)
        delay = retry_s
