"""The outbox (migration 0017): webhook subscriptions, notification channels, and deliveries.

Rows are written by the trigger ``incident_events_outbox`` in the statement that appends an
event, so they share its transaction; ``emit`` adds those of events that are not in the trail
(audit checkpoints, photos). The delivery worker claims due rows with ``FOR UPDATE SKIP
LOCKED``, holds them for the length of one send round and records the outcome in the same
transaction: a worker killed mid-send leaves its rows pending, to be sent again under the
same id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from gis.errors import NotFound
from layers.db import Conn, translate_errors
from layers.incidents import _CASE_COLUMNS

OPEN = ("pending", "failed")
# One message per channel at most this often: a WeCom group bot takes about 20 a minute.
NOTIFY_SPACING_S = 3.0


# -- rules and targets -----------------------------------------------------------------------


def set_notify_rules(conn: Conn, rules: Mapping[str, Sequence[str]]) -> None:
    """Replace who-gets-which-event (the catalogue's ``notifications``)."""
    with translate_errors():
        conn.execute("DELETE FROM notify_rules")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO notify_rules (event_type, audience) VALUES (%s, %s)",
                [(ev, a) for ev, audiences in rules.items() for a in audiences],
            )


_SUB_COLUMNS = (
    "id, url, events, side, mechanism, category, role, full_payload, allow_private, name,"
    " enabled, disabled_reason, disabled_at, created_at, old_secret_until"
)


def add_subscription(conn: Conn, *, fields: dict[str, Any]) -> dict[str, Any]:
    """Store a subscription (id and secret made by the caller); return it without secrets."""
    return _insert(conn, "webhook_subscriptions", fields, _SUB_COLUMNS)


def _insert(conn: Conn, table: str, fields: dict[str, Any], returning: str) -> dict[str, Any]:
    """Insert one row of ``fields`` (column: value) into ``table``; its ``returning`` columns."""
    cols = list(fields)
    with translate_errors():
        row = conn.execute(
            f"INSERT INTO {table} ({', '.join(cols)})"
            f" VALUES ({', '.join(['%s'] * len(cols))}) RETURNING {returning}",
            list(fields.values()),
        ).fetchone()
    assert row is not None
    return row


def subscriptions(conn: Conn) -> list[dict[str, Any]]:
    """Every subscription, oldest first, with its open and dead delivery counts (no secrets)."""
    with translate_errors():
        return conn.execute(
            f"SELECT {', '.join('s.' + c.strip() for c in _SUB_COLUMNS.split(','))},"
            " (SELECT count(*) FROM outbox o WHERE o.target = s.id"
            "   AND o.status IN ('pending', 'failed')) AS open,"
            " (SELECT count(*) FROM outbox o WHERE o.target = s.id AND o.status = 'dead') AS dead"
            " FROM webhook_subscriptions s ORDER BY s.created_at, s.id"
        ).fetchall()


def disable_subscription(conn: Conn, sub_id: str, *, reason: str) -> dict[str, Any]:
    """Stop sending to a subscription; its open deliveries wait (re-enabling would send them)."""
    with translate_errors():
        row = conn.execute(
            "UPDATE webhook_subscriptions SET enabled = false, disabled_reason = %s,"
            f" disabled_at = now() WHERE id = %s RETURNING {_SUB_COLUMNS}",
            (reason, sub_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"no webhook subscription {sub_id}", {"id": sub_id})
    return row


def rotate_secret(conn: Conn, sub_id: str, *, secret: str, grace_until: datetime) -> None:
    """Make ``secret`` the signing secret; the old one still signs until ``grace_until``."""
    with translate_errors():
        cur = conn.execute(
            "UPDATE webhook_subscriptions SET old_secret = secret, old_secret_until = %s,"
            " secret = %s WHERE id = %s",
            (grace_until, secret, sub_id),
        )
    if cur.rowcount == 0:
        raise NotFound(f"no webhook subscription {sub_id}", {"id": sub_id})


def add_channel(conn: Conn, *, fields: dict[str, Any]) -> dict[str, Any]:
    """Store a notification channel."""
    return _insert(
        conn, "notify_channels", fields, "id, team, side, role, name, enabled, created_at"
    )


def channels(conn: Conn) -> list[dict[str, Any]]:
    """Every notification channel with its URL (callers mask it before showing it)."""
    with translate_errors():
        return conn.execute(
            "SELECT id, team, side, role, url, name, enabled, created_at FROM notify_channels"
            " ORDER BY created_at, id"
        ).fetchall()


def disable_channel(conn: Conn, channel_id: str) -> None:
    with translate_errors():
        cur = conn.execute(
            "UPDATE notify_channels SET enabled = false WHERE id = %s", (channel_id,)
        )
    if cur.rowcount == 0:
        raise NotFound(f"no notification channel {channel_id}", {"id": channel_id})


# -- events not in the trail -----------------------------------------------------------------


def emit(
    conn: Conn,
    *,
    event_type: str,
    data: dict[str, Any],
    incident_id: str | None = None,
) -> int:
    """Queue an event that is not a trail row (e.g. ``audit.checkpoint``) for every enabled
    subscription that takes it, in the caller's transaction; return how many rows."""
    with translate_errors():
        cur = conn.execute(
            "INSERT INTO outbox (kind, target, event_type, incident_id, side, data)"
            " SELECT 'webhook', s.id, %(type)s, i.id, i.side, %(data)s"
            " FROM webhook_subscriptions s"
            " LEFT JOIN incidents i ON i.id = %(incident)s::uuid"
            " WHERE s.enabled AND (%(type)s = ANY (s.events) OR '*' = ANY (s.events))"
            # an event about no case (a checkpoint) goes to every subscription that takes it
            "   AND (%(incident)s::uuid IS NULL OR ("
            "     (s.side IS NULL OR s.side = ANY (i.sides))"
            "     AND (s.mechanism IS NULL OR s.mechanism = i.mechanism)"
            "     AND (s.category IS NULL OR s.category = i.category)))"
            " ORDER BY s.id",
            {"type": event_type, "data": Jsonb(data), "incident": incident_id},
        )
    return cur.rowcount


def mark_overdue(conn: Conn, *, case: dict[str, Any], now: datetime) -> bool:
    """Append the ``overdue`` event of a case past its due time, once per case and due time
    (a unique index; a second pass adds nothing); True when it was appended. The outbox
    trigger fans it out like any event."""
    with translate_errors():
        cur = conn.execute(
            "INSERT INTO incident_events (incident_id, side, seq, action, from_status, to_status,"
            " actor, actor_side, note, payload, at)"
            " SELECT %(id)s, %(side)s, coalesce(max(seq), 0) + 1, 'overdue', %(status)s,"
            " %(status)s, %(actor)s, NULL, NULL, %(payload)s, %(at)s"
            " FROM incident_events WHERE incident_id = %(id)s"
            " ON CONFLICT (incident_id, (payload->>'due_at')) WHERE action = 'overdue'"
            " DO NOTHING",
            {
                "id": case["id"],
                "side": case["side"],
                "status": case["status"],
                "actor": Jsonb({"kind": "system", "task": "escalate-overdue"}),
                "payload": Jsonb({"due_at": case["due_at"].astimezone(UTC).isoformat()}),
                "at": now,
            },
        )
    return cur.rowcount == 1


def on_checkpoint(conn: Conn, checkpoint: dict[str, Any]) -> int:
    """Call after an audit checkpoint is written, in its transaction: ``audit.checkpoint``."""
    return emit(conn, event_type="audit.checkpoint", data=checkpoint)


def on_photo_added(conn: Conn, *, incident_id: str, media: dict[str, Any]) -> int:
    """Call after a photo is stored, in its transaction (unless the photo is a trail event,
    which the trigger sends by itself): ``incident.photo_added``."""
    return emit(
        conn, event_type="incident.photo_added", data={"media": media}, incident_id=incident_id
    )


# -- the worker's side -----------------------------------------------------------------------


def claim(conn: Conn, *, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Due deliveries whose stream has nothing earlier still open, locked for this
    transaction (other workers skip them), each with what its send needs."""
    with translate_errors():
        ids = [
            r["id"]
            for r in conn.execute(
                "SELECT o.id FROM outbox o"
                " WHERE o.status IN ('pending', 'failed') AND o.next_at <= %(now)s"
                " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.stream = o.stream"
                "   AND p.target = o.target AND p.id < o.id AND p.status IN ('pending', 'failed'))"
                " AND CASE o.kind"
                "   WHEN 'webhook' THEN EXISTS (SELECT 1 FROM webhook_subscriptions s"
                "                               WHERE s.id = o.target AND s.enabled)"
                "   ELSE EXISTS (SELECT 1 FROM notify_channels c WHERE c.id = o.target AND c.enabled"
                "     AND (c.last_sent_at IS NULL OR c.last_sent_at <= %(now)s - %(spacing)s))"
                " END"
                " ORDER BY o.next_at, o.id LIMIT %(limit)s"
                " FOR UPDATE OF o SKIP LOCKED",
                {"now": now, "limit": limit, "spacing": timedelta(seconds=NOTIFY_SPACING_S)},
            )
        ]
        if not ids:
            return []
        rows = conn.execute(
            "SELECT o.id, o.kind, o.target, o.event_type, o.attempts, o.body, o.data,"
            " o.created_at, o.incident_id::text AS incident_id, o.event_id,"
            " s.url, s.role, s.full_payload, s.allow_private, s.secret, s.old_secret,"
            " s.old_secret_until, s.side AS sub_side, ch.url AS channel_url, ch.team AS channel_team,"
            " ch.side AS channel_side, ch.role AS channel_role"
            " FROM outbox o"
            " LEFT JOIN webhook_subscriptions s ON o.kind = 'webhook' AND s.id = o.target"
            " LEFT JOIN notify_channels ch ON o.kind = 'notify' AND ch.id = o.target"
            " WHERE o.id = ANY (%s) ORDER BY o.id",
            (ids,),
        ).fetchall()
        need_cases = list(
            {r["incident_id"] for r in rows if r["incident_id"] and r["body"] is None}
        )
        need_events = list({r["event_id"] for r in rows if r["event_id"] and r["body"] is None})
        cases = {
            c["id"]: c
            for c in conn.execute(
                f"SELECT {_CASE_COLUMNS} FROM incidents i WHERE i.id = ANY (%s::uuid[])",
                (need_cases,),
            )
        }
        events = {
            e["id"]: e
            for e in conn.execute(
                "SELECT id, seq, action, from_status, to_status, actor_side, note, payload, at"
                " FROM incident_events WHERE id = ANY (%s)",
                (need_events,),
            )
        }
    for r in rows:
        r["case"] = cases.get(r["incident_id"])
        r["event"] = events.get(r["event_id"])
    return rows


def channels_sent(conn: Conn, channel_ids: list[str], *, at: datetime) -> None:
    """Remember when each channel was last sent to (the claim spaces its messages)."""
    with translate_errors():
        conn.execute(
            "UPDATE notify_channels SET last_sent_at = %s WHERE id = ANY (%s)", (at, channel_ids)
        )


def record(conn: Conn, outcomes: Iterable[dict[str, Any]]) -> None:
    """Write each attempt's outcome: ``id``, ``status``, ``next_at``, ``error``, ``http``,
    ``body`` (frozen on the first attempt), ``at``."""
    rows = [
        (
            o["id"],
            o["status"],
            o["next_at"],
            o.get("error"),
            o.get("http"),
            o.get("body"),
            o["at"],
        )
        for o in outcomes
    ]
    if not rows:
        return
    with translate_errors(), conn.cursor() as cur:
        cur.executemany(
            "UPDATE outbox SET status = %s, attempts = attempts + 1, next_at = %s,"
            " last_error = %s, last_status = %s, body = coalesce(body, %s),"
            " last_attempt_at = %s,"
            " delivered_at = CASE WHEN %s = 'delivered' THEN %s END WHERE id = %s",
            [(s, n, e, h, b, at, s, at, i) for (i, s, n, e, h, b, at) in rows],
        )


def replay(conn: Conn, *, since: datetime, now: datetime) -> int:
    """Send the dead deliveries made since ``since`` again (same ids, a fresh schedule)."""
    with translate_errors():
        cur = conn.execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_at = %s"
            " WHERE status = 'dead' AND created_at >= %s",
            (now, since),
        )
    return cur.rowcount


def deliveries_for_case(conn: Conn, case_id: str) -> list[dict[str, Any]]:
    """Every webhook delivery and notification of one case, oldest first, with its status:
    for the case page (``kind`` webhook or notify; ``to`` the subscription's URL, or the
    channel's team / side / role, never its URL, which may hold a bot key)."""
    with translate_errors():
        return conn.execute(
            "SELECT o.id, 'msg_' || o.id AS webhook_id, o.kind, o.target, o.event_type,"
            " e.seq AS event_seq, o.status, o.attempts, o.last_error, o.last_status,"
            " o.next_at, o.created_at, o.last_attempt_at, o.delivered_at,"
            " CASE o.kind WHEN 'webhook' THEN s.url"
            "  ELSE concat_ws(' ', 'team:' || ch.team, 'side:' || ch.side, 'role:' || ch.role) END"
            " AS to, coalesce(s.name, ch.name) AS target_name"
            " FROM outbox o"
            " JOIN incidents i ON o.stream = i.id"
            " LEFT JOIN incident_events e ON e.id = o.event_id"
            " LEFT JOIN webhook_subscriptions s ON o.kind = 'webhook' AND s.id = o.target"
            " LEFT JOIN notify_channels ch ON o.kind = 'notify' AND ch.id = o.target"
            " WHERE i.id::text = %(id)s OR i.code = %(id)s ORDER BY o.id",
            {"id": case_id},
        ).fetchall()


def prune(conn: Conn, *, before: datetime, limit: int = 50_000) -> int:
    """Delete up to ``limit`` delivered rows delivered before ``before``; dead and open rows
    stay (an admin replays or inspects them)."""
    with translate_errors():
        cur = conn.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE status = 'delivered'"
            " AND delivered_at < %s LIMIT %s)",
            (before, limit),
        )
    return cur.rowcount


def counts(conn: Conn) -> dict[str, int]:
    """Deliveries by status."""
    with translate_errors():
        rows = conn.execute("SELECT status, count(*) AS n FROM outbox GROUP BY status").fetchall()
    return {r["status"]: int(r["n"]) for r in rows}
