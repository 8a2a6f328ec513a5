"""Cases (incidents) and their append-only audit events."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

import shapely
from psycopg import sql as q
from psycopg.types.json import Jsonb
from shapely.geometry.base import BaseGeometry

from gis import redaction
from gis.errors import NotFound
from gis.workflow import STATUSES
from layers.db import Conn, translate_errors
from layers.registry import LayerSpec, register

SPEC = register(
    LayerSpec(
        id="incidents",
        title="Incidents",
        description="Reported cases with their routing; reporter identity and contacts are never public.",
        table="incidents",
        geometry_column="geom",
        geometry_type="Point",
        id_column="id",
        # One rule for every public surface (OGC, Open311): gis.redaction.
        public=redaction.PUBLIC_FIELDS,
        private=redaction.PRIVATE_FIELDS,
        linked=redaction.PUBLIC_LINKS,  # the stripped photos (layers.features.media_links)
        temporal="occurred_at",
        style={"radius": 6},
    )
)

_CASE_COLUMNS = """
    i.id::text AS id, i.code, i.status, i.category, i.severity, i.description,
    i.side, i.sides, i.cross_boundary, i.reasons, i.mechanism, i.lead_side,
    i.distance_to_border_m, i.grid_code, i.police_grid_code, i.teams, i.contacts, i.routing,
    i.occurred_at, i.reported_at, i.updated_at, i.due_at, i.escalation_level, i.verified_sides,
    i.merged_into::text AS merged_into, i.possible_duplicate_of::text AS possible_duplicate_of,
    i.input, i.reporter, i.request_hash,
    ST_AsGeoJSON(i.geom, 7)::json AS location, ST_AsGeoJSON(i.extent, 7)::json AS extent
"""


_SIDE_ID = re.compile(r"^00([0-9]{6})-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def new_id(side: str) -> str:
    """A case id that names its intake side: ``00<side>-xxxx-4xxx-yxxx-xxxxxxxxxxxx`` (a valid
    random UUID otherwise), so a look-up by id can be routed to the side's shard."""
    return "00" + side + str(uuid.uuid4())[8:]


def side_of_id(case_id: str) -> str | None:
    """The intake side embedded in a case id, or None (older ids, codes)."""
    m = _SIDE_ID.match(case_id)
    return m.group(1) if m else None


def insert_reported(
    conn: Conn,
    *,
    fields: dict[str, Any],
    geom: BaseGeometry,
    extent: BaseGeometry | None,
    idempotency_key: str | None,
    request_hash: str,
    event: dict[str, Any],
) -> dict[str, Any] | None:
    """Insert a new case, its first audit event, and return the stored case: one statement,
    so one round trip and one atomic write. None when the idempotency key is already taken."""
    values = [
        Jsonb(v) if isinstance(v, dict | list) and c not in ("sides", "reasons") else v
        for c, v in fields.items()
    ]
    query = _insert_reported_sql(tuple(fields), conn.info.encoding, conn)
    with translate_errors():
        return conn.execute(
            query,
            [
                new_id(str(fields["side"])),
                *values,
                shapely.to_wkb(geom),
                None if extent is None else shapely.to_wkb(extent),
                idempotency_key,
                request_hash,
                event["action"],
                Jsonb(event["actor"]),
                event.get("actor_side"),
                Jsonb(event["payload"]),
            ],
        ).fetchone()


_insert_sql: dict[tuple[tuple[str, ...], str], bytes] = {}


def _insert_reported_sql(cols: tuple[str, ...], encoding: str, conn: Conn) -> bytes:
    """The statement of ``insert_reported`` for these columns, composed once (composing it
    for every report cost a fifth of the report's Python time)."""
    key = (cols, encoding)
    cached = _insert_sql.get(key)
    if cached is not None:
        return cached
    query = q.SQL(
        "WITH ins AS ("
        " INSERT INTO incidents (id, {cols}, code, geom, extent, idempotency_key, request_hash)"
        " VALUES (%s, {vals}, 'JG' || to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD')"
        " || '-' || (SELECT lpad(n, greatest(6, length(n)), '0')"
        "           FROM (SELECT nextval('incident_code_seq')::text AS n) s),"
        " ST_GeomFromWKB(%s, 4326), ST_GeomFromWKB(%s, 4326), %s, %s)"
        " ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
        " RETURNING *),"
        " ev AS (INSERT INTO incident_events (incident_id, side, seq, action, from_status,"
        " to_status, actor, actor_side, note, payload)"
        " SELECT ins.id, ins.side, 1, %s, NULL, ins.status, %s, %s, NULL, %s FROM ins)"
        " SELECT " + _CASE_COLUMNS + " FROM ins i"
    ).format(
        cols=q.SQL(", ").join(q.Identifier(c) for c in cols),
        vals=q.SQL(", ").join(q.Placeholder() * len(cols)),
    )
    if len(_insert_sql) > 64:  # the callers use one or two column sets
        _insert_sql.clear()
    cached = _insert_sql[key] = query.as_bytes(conn)
    return cached


def by_key(conn: Conn, key: str) -> dict[str, Any] | None:
    """The case created with this idempotency key, if any."""
    with translate_errors():
        return conn.execute(
            f"SELECT {_CASE_COLUMNS} FROM incidents i WHERE i.idempotency_key = %s", (key,)
        ).fetchone()


def get(conn: Conn, case_id: str, *, for_update: bool = False) -> dict[str, Any]:
    """The case with this id (uuid or code); ``NotFound`` otherwise.

    An id that embeds its intake side is looked up on that side only (a single-shard query
    when distributed by side); a code, or an older id, is looked up everywhere.
    """
    lock = " FOR UPDATE" if for_update else ""
    side = side_of_id(case_id)
    with translate_errors():
        row = None
        if side is not None:
            row = conn.execute(
                f"SELECT {_CASE_COLUMNS} FROM incidents i "
                "WHERE i.side = %(side)s AND i.id = %(id)s::uuid" + lock,
                {"id": case_id, "side": side},
            ).fetchone()
        if row is None:
            row = conn.execute(
                f"SELECT {_CASE_COLUMNS} FROM incidents i "
                "WHERE i.id::text = %(id)s OR i.code = %(id)s" + lock,
                {"id": case_id},
            ).fetchone()
    if row is None:
        raise NotFound(f"no case {case_id}", {"id": case_id})
    return row


def reference_rows(conn: Conn, case_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Who may see each of these cases (sides, teams, reporter), by id: for checking the
    cases that another case refers to (merged into, possible duplicate of)."""
    ids = sorted({i for i in case_ids if i})
    if not ids:
        return {}
    with translate_errors():
        rows = conn.execute(
            "SELECT i.id::text AS id, i.sides, i.teams, i.reporter FROM incidents i"
            " WHERE i.id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
    return {r["id"]: r for r in rows}


def update_state(conn: Conn, case_id: str, *, changes: dict[str, Any]) -> None:
    """Write workflow fields of a case (status, due time, sign-offs, escalation, merge)."""
    sets = q.SQL(", ").join(
        q.SQL("{} = {}").format(q.Identifier(c), q.Placeholder(c)) for c in changes
    )
    side = side_of_id(case_id)
    where = "id = %(_id)s" + (" AND side = %(_side)s" if side else "")
    with translate_errors():
        conn.execute(
            q.SQL("UPDATE incidents SET {sets}, updated_at = now() WHERE " + where).format(
                sets=sets
            ),
            {**changes, "_id": case_id, "_side": side},
        )


def append_event(
    conn: Conn,
    *,
    incident_id: str,
    side: str,
    action: str,
    from_status: str | None,
    to_status: str,
    actor: dict[str, Any],
    actor_side: str | None,
    note: str | None,
    payload: dict[str, Any],
    at: datetime | None = None,
) -> dict[str, Any]:
    """Append one audit event; its sequence number follows the case's last one."""
    with translate_errors():
        row = conn.execute(
            "INSERT INTO incident_events (incident_id, side, seq, action, from_status, to_status,"
            " actor, actor_side, note, payload, at)"
            " SELECT %(id)s, %(side)s, coalesce(max(seq), 0) + 1, %(action)s, %(from)s, %(to)s,"
            " %(actor)s, %(actor_side)s, %(note)s, %(payload)s, coalesce(%(at)s, now())"
            " FROM incident_events WHERE incident_id = %(id)s"
            " RETURNING id, seq, at",
            {
                "id": incident_id,
                "side": side,
                "action": action,
                "from": from_status,
                "to": to_status,
                "actor": Jsonb(actor),
                "actor_side": actor_side,
                "note": note,
                "payload": Jsonb(payload),
                "at": at,
            },
        ).fetchone()
    return row  # type: ignore[return-value]


def events(conn: Conn, case_id: str) -> list[dict[str, Any]]:
    """The audit trail of a case, oldest first (routed by the intake side its id embeds)."""
    side = side_of_id(case_id)
    with translate_errors():
        return conn.execute(
            "SELECT e.seq, e.action, e.from_status, e.to_status, e.actor, e.actor_side, e.note,"
            " e.payload, e.at FROM incident_events e WHERE e.incident_id = %(id)s"
            + (" AND e.side = %(side)s" if side else "")
            + " ORDER BY e.seq",
            {"id": case_id, "side": side},
        ).fetchall()


# Filters of the case list: name -> (SQL clause with one placeholder).
_FILTERS: dict[str, str] = {
    "status": "i.status = ANY(%({})s)",
    "mechanism": "i.mechanism = ANY(%({})s)",
    "side": "i.sides && %({})s::text[]",
    "category": "i.category = ANY(%({})s)",
    "severity": "i.severity = ANY(%({})s)",
    "since": "i.reported_at >= %({})s",
    "until": "i.reported_at < %({})s",
    "updated_since": "i.updated_at > %({})s",
    "cross_boundary": "i.cross_boundary = %({})s",
    # the operators' inbox (api.pages.cases)
    "involved_side": "i.sides && %({})s::text[]",
    "assigned_team": "i.teams @> jsonb_build_array(jsonb_build_object('code', %({})s::text))",
    "text": "(i.code ILIKE %({0})s OR i.description ILIKE %({0})s)",
    "overdue_at": "(i.status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved')"
    " AND coalesce(i.due_at, 'infinity'::timestamptz) < %({})s)",
}

# Access scopes (api.access.case_scope): what the caller may see. Kept apart from the filters
# above, so that a filter (``side``) narrows what the caller may see and is never replaced by it.
_SCOPES: dict[str, str] = {
    "side": "i.sides && ARRAY[%({})s::text]",
    "team": "i.teams @> jsonb_build_array(jsonb_build_object('code', %({})s::text))",
    "reporter_key": "i.reporter->>'key_id' = %({})s",
    "none": "NOT %({})s",
}


# The same scope checked on each entry of the index that gives the inbox's due order (the
# sides are in incidents_inbox_cover_idx; incidents_inbox_filters_idx's few entries under a
# mechanism and a severity each cost a heap row), not by a bitmap of incidents_sides_gin: that
# bitmap costs all of a side's cases (22,837 at province scale, 3.5-4 ms) once per status of
# the inbox's view, where the API's one statement pays it once (docs/performance.md).
_SCOPES_BY_ENTRY: dict[str, str] = {"side": "%({})s::text = ANY(i.sides)"}


def like_pattern(text: str) -> str:
    """An ILIKE pattern matching ``text`` anywhere, its own ``%``, ``_`` and ``\\`` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Orders of the case list: the SQL sort key, and how the keyset cursor compares with it.
# ``due`` sorts a case with no time limit last (as if due at infinity).
_DUE_KEY = "coalesce(i.due_at, 'infinity'::timestamptz)"
_ORDERS: dict[str, tuple[str, str]] = {
    "reported": (
        "i.reported_at DESC, i.id::text DESC",
        "(i.reported_at, i.id::text) < (%(a_t)s::timestamptz, %(a_id)s)",
    ),
    "due": (
        f"{_DUE_KEY}, i.id",
        f"({_DUE_KEY}, i.id) > (%(a_t)s::timestamptz, %(a_id)s::uuid)",
    ),
}


# The same filters as plain equalities when they name one value: PostgreSQL takes ``x = ANY(array)``
# for no equality, so an index beginning with ``x`` would not give the rows of one value in the
# order of its later columns (the inbox's due order, incidents_inbox_filters_idx).
_ONE: dict[str, str] = {
    "status": "i.status = %({})s",
    "mechanism": "i.mechanism = %({})s",
    "category": "i.category = %({})s",
    "severity": "i.severity = %({})s",
}


def _where(
    filters: dict[str, Any],
    scope: dict[str, Any] | None = None,
    *,
    one: bool = False,
    by_entry: bool = False,
) -> tuple[list[str], dict[str, Any]]:
    """The WHERE clauses and parameters of ``filters``, within the access ``scope``; with
    ``one``, a list filter naming one value is written as an equality (the same cases); with
    ``by_entry``, the scope is checked on each row an index gives (``_SCOPES_BY_ENTRY``)."""
    where = ["true"]
    params: dict[str, Any] = {}
    for name, value in filters.items():
        if value is None or value == []:
            continue
        if one and name in _ONE and len(value) == 1:
            where.append(_ONE[name].format(name))
            params[name] = value[0]
            continue
        where.append(_FILTERS[name].format(name))
        params[name] = like_pattern(value) if name == "text" else value
    for name, value in (scope or {}).items():
        how = (by_entry and _SCOPES_BY_ENTRY.get(name)) or _SCOPES[name]
        where.append(how.format(f"scope_{name}"))
        params[f"scope_{name}"] = value
    return where, params


def list_cases(
    conn: Conn,
    *,
    filters: dict[str, Any],
    bbox: tuple[float, float, float, float] | None,
    limit: int,
    after: tuple[str, str] | None,
    order: str = "reported",
    scope: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Cases matching ``filters`` within ``scope`` (what the caller may see; None: all),
    keyset-paged after the last row's sort key.

    ``order="reported"``: newest first, after ``(reported_at, id)``. ``order="due"``: the
    soonest due first (no due time last), after ``(due_at or 'infinity', id)``; each status is
    read in index order (``incidents_inbox_cover_idx``, or ``incidents_inbox_filters_idx``
    under a mechanism and a severity) and the statuses merged, so a first page reads about
    ``limit`` matching entries per status however many cases there are.
    """
    sort, keyset = _ORDERS[order]
    if order == "due":
        # Each status's first ``limit`` ids in due order, merged, and only then the rows. The
        # ids alone can come from incidents_inbox_cover_idx (migration 0028), which carries the
        # due time and the sides: an operator's scope is checked on each index entry, without
        # a heap page per case passed over (docs/performance.md, the inbox's queries).
        parts = []
        params: dict[str, Any] = {"limit": limit}
        where, more = _where({**filters, "status": None}, scope, one=True, by_entry=True)
        params.update(more)
        _bbox_and_after(where, params, bbox, after, keyset)
        for k, status in enumerate(filters.get("status") or STATUSES):
            params[f"st{k}"] = status
            parts.append(
                f"(SELECT i.id, {_DUE_KEY} AS due FROM incidents i"
                f" WHERE {' AND '.join(where)} AND i.status = %(st{k})s"
                f" ORDER BY {sort} LIMIT %(limit)s)"
            )
        query = (
            f"SELECT {_CASE_COLUMNS} FROM (SELECT * FROM ("
            + " UNION ALL ".join(parts)
            + ") u ORDER BY u.due, u.id LIMIT %(limit)s) k JOIN incidents i ON i.id = k.id"
            " ORDER BY k.due, k.id"
        )
        with translate_errors():
            return conn.execute(query, params).fetchall()
    where, params = _where(filters, scope)
    params["limit"] = limit
    _bbox_and_after(where, params, bbox, after, keyset)
    with translate_errors():
        return conn.execute(
            f"SELECT {_CASE_COLUMNS} FROM incidents i WHERE {' AND '.join(where)} "
            f"ORDER BY {sort} LIMIT %(limit)s",
            params,
        ).fetchall()


def _bbox_and_after(
    where: list[str],
    params: dict[str, Any],
    bbox: tuple[float, float, float, float] | None,
    after: tuple[str, str] | None,
    keyset: str,
) -> None:
    if bbox is not None:
        where.append("i.geom && ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326)")
        params.update(zip("wsen", bbox, strict=True))
    if after is not None:
        where.append(keyset)
        params.update(a_t=after[0], a_id=after[1])


_OPEN = "('reported', 'accepted', 'dispatched', 'in_progress', 'resolved')"
SCOPE_SCAN_MAX = 50_000
"""A side's counts are read in one pass over its own cases when it has at most this many
under the filters (see ``count_capped``); a larger side is counted group by group."""


def count_capped(
    conn: Conn,
    *,
    filters: dict[str, Any],
    groups: dict[str, list[str]],
    now: datetime,
    cap: int,
    scope: dict[str, Any] | None = None,
) -> dict[str, int]:
    """How many cases match ``filters`` in each named group of statuses, and ``overdue`` (open
    and past due at ``now``), each counted up to ``cap + 1``: more than ``cap`` means "more".

    Capped, so each count reads a bounded stretch of ``incidents_inbox_cover_idx`` however large the
    table: an inbox needs "how many, up to a few pages", not an exact million on every refresh.
    Within a side's scope (an operator), the side's own cases (``incidents_sides_gin``) are
    far fewer than any status's range, so they are read once, up to ``SCOPE_SCAN_MAX``, and
    counted by status: one pass instead of a bitmap of each group's whole range intersected
    with the side's (docs/performance.md, the inbox's counts).
    """
    where, params = _where({**filters, "status": None}, scope, one=True)
    params.update(cap=cap + 1, now=now)
    cond = " AND ".join(where)
    if "side" in (scope or {}):
        params["scan"] = SCOPE_SCAN_MAX + 1
        with translate_errors():
            got = conn.execute(
                "SELECT s.status, count(*) AS n, count(*) FILTER (WHERE s.late) AS late"
                " FROM (SELECT i.status, i.status IN " + _OPEN + " AND"
                " coalesce(i.due_at, 'infinity'::timestamptz) < %(now)s AS late"
                f" FROM incidents i WHERE {cond} LIMIT %(scan)s) s GROUP BY s.status",
                params,
            ).fetchall()
        if sum(r["n"] for r in got) <= SCOPE_SCAN_MAX:
            n = {r["status"]: int(r["n"]) for r in got}
            out = {name: min(cap + 1, sum(n.get(x, 0) for x in st)) for name, st in groups.items()}
            out["overdue"] = min(cap + 1, sum(int(r["late"]) for r in got))
            return out
    parts = []
    for k, statuses in enumerate(groups.values()):
        params[f"g{k}"] = list(statuses)
        parts.append(
            f"(SELECT count(*) FROM (SELECT 1 FROM incidents i WHERE {cond}"
            f" AND i.status = ANY(%(g{k})s) LIMIT %(cap)s) c) AS g{k}"
        )
    parts.append(
        f"(SELECT count(*) FROM (SELECT 1 FROM incidents i WHERE {cond}"
        f" AND i.status IN {_OPEN}"
        " AND coalesce(i.due_at, 'infinity'::timestamptz) < %(now)s LIMIT %(cap)s) c) AS overdue"
    )
    with translate_errors():
        row = conn.execute("SELECT " + ", ".join(parts), params).fetchone() or {}
    out = {name: int(row[f"g{k}"]) for k, name in enumerate(groups)}
    out["overdue"] = int(row["overdue"])
    return out


def overdue(conn: Conn, *, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
    """Open cases past their due time, locked for this transaction (others skip them)."""
    with translate_errors():
        return conn.execute(
            f"SELECT {_CASE_COLUMNS} FROM incidents i"
            " WHERE i.status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved')"
            " AND i.due_at < %s ORDER BY i.due_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, limit),
        ).fetchall()


def verify_chain(conn: Conn) -> dict[str, Any]:
    """Recompute every event's hash from its predecessor and content; list any break."""
    with translate_errors():
        breaks = conn.execute(
            "WITH e AS (SELECT e.*, lag(e.hash) OVER w AS expected_prev,"
            " lag(e.seq) OVER w AS prev_seq FROM incident_events e"
            " WINDOW w AS (PARTITION BY e.incident_id ORDER BY e.seq))"
            " SELECT i.code, e.seq, CASE"
            "  WHEN e.prev_hash IS DISTINCT FROM e.expected_prev THEN 'does not follow the previous event'"
            "  WHEN e.seq <> coalesce(e.prev_seq, 0) + 1 THEN 'an event is missing before it'"
            "  ELSE 'its content does not match its hash' END AS problem"
            " FROM e JOIN incidents i ON i.id = e.incident_id"
            " WHERE e.prev_hash IS DISTINCT FROM e.expected_prev"
            "    OR e.seq <> coalesce(e.prev_seq, 0) + 1"
            "    OR e.hash IS DISTINCT FROM incident_event_digest(e.prev_hash,"
            "       ROW(e.id, e.incident_id, e.side, e.seq, e.action, e.from_status, e.to_status,"
            "           e.actor, e.actor_side, e.note, e.payload, e.at, e.prev_hash, e.hash)::incident_events)"
            " ORDER BY i.code, e.seq"
        ).fetchall()
        n = conn.execute(
            "SELECT count(*) AS events, count(DISTINCT incident_id) AS cases FROM incident_events"
        ).fetchone()
    return {"breaks": breaks, "events": n["events"] if n else 0, "cases": n["cases"] if n else 0}
