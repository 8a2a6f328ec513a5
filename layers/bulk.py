"""Bulk storage for province-scale data: COPY in, COPY out, and set-wise writes.

Row-by-row INSERTs cost a round trip and a parse each; COPY streams rows in one statement.
Geometry goes in as hex EWKB with SRID 4326 and comes out as WKB, read by shapely in bulk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import shapely
from psycopg import ClientCursor
from psycopg import sql as q
from psycopg.types.json import Jsonb

from gis.routing import FRESH_FIX_S
from layers.db import Conn, translate_errors


def ewkb_hex(geoms: Any) -> list[str | None]:
    """Hex EWKB with SRID 4326 for an array of shapely geometries (None stays None)."""
    arr = np.asarray(geoms, dtype=object)
    out = shapely.to_wkb(shapely.set_srid(arr, 4326), hex=True, include_srid=True)
    return [None if g is None else str(g) for g in out]


def copy_rows(conn: Conn, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY ``rows`` into ``table`` (in the caller's transaction); return how many."""
    n = 0
    stmt = q.SQL("COPY {} ({}) FROM STDIN").format(
        q.Identifier(table), q.SQL(", ").join(q.Identifier(c) for c in columns)
    )
    with translate_errors(), conn.cursor().copy(stmt) as copy:
        for r in rows:
            copy.write_row(r)
            n += 1
    return n


def copy_text(conn: Conn, table: str, columns: Sequence[str], chunks: Iterable[str]) -> None:
    """COPY pre-formatted text (tab-separated, ``\\N`` for NULL) into ``table``."""
    stmt = q.SQL("COPY {} ({}) FROM STDIN").format(
        q.Identifier(table), q.SQL(", ").join(q.Identifier(c) for c in columns)
    )
    with translate_errors(), conn.cursor().copy(stmt) as copy:
        for chunk in chunks:
            copy.write(chunk)


def jsonb(v: Any) -> Jsonb:
    return Jsonb(v)


def count(conn: Conn, query: str, params: Sequence[Any] = ()) -> int:
    with translate_errors():
        row = conn.execute(query, params).fetchone()
    return int(next(iter(row.values()))) if row else 0


def fetch_layer(conn: Conn, query: str, params: Any = None) -> dict[str, list[Any]]:
    """Run ``query`` and return its columns as lists; a ``wkb`` column becomes ``geoms``."""
    with translate_errors():
        rows = conn.execute(query, params).fetchall()
    cols: dict[str, list[Any]] = {}
    if rows:
        for k in rows[0]:
            cols[k] = [r[k] for r in rows]
    if "wkb" in cols:
        cols["geoms"] = list(
            shapely.from_wkb(np.array([bytes(b) for b in cols.pop("wkb")], dtype=object))
        )
    return cols


def drop_secondary_indexes(conn: Conn, tables: Sequence[str]) -> list[str]:
    """Drop the indexes of ``tables`` that back no constraint (in the caller's transaction);
    return their definitions for ``create_indexes``. For bulk loads into empty tables."""
    with translate_errors():
        rows = conn.execute(
            "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def"
            " FROM pg_index i WHERE i.indrelid = ANY (%s::regclass[])"
            " AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            (list(tables),),
        ).fetchall()
        for r in rows:
            conn.execute(q.SQL("DROP INDEX {}").format(q.Identifier(r["name"])))
    return [r["def"] for r in rows]


def create_indexes(conn: Conn, definitions: Sequence[str]) -> None:
    """Re-create indexes from their definitions (``pg_get_indexdef``)."""
    with translate_errors():
        conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
        for d in definitions:
            conn.execute(d)


def chain_events(conn: Conn, stage: str) -> int:
    """Append the events staged in temp table ``stage`` (same columns as ``incident_events``
    minus id and hashes), computing the hash chain set-wise, one sequence level at a time.

    The per-row chain trigger does the same work with one index probe per row; here each level
    is one join. The trigger is disabled for this transaction only (needs the table owner),
    so the stored hashes are exactly what it would have written.
    """
    cols = "incident_id, side, seq, action, from_status, to_status, actor, actor_side, note, payload, at"
    st = q.Identifier(stage)
    n = 0
    with translate_errors():
        levels = conn.execute(
            q.SQL("SELECT DISTINCT seq FROM {} ORDER BY seq").format(st)
        ).fetchall()
        conn.execute("ALTER TABLE incident_events DISABLE TRIGGER incident_events_chain")
        for lv in levels:
            cur = conn.execute(
                q.SQL(
                    "INSERT INTO incident_events (" + cols + ", prev_hash, hash)"
                    " SELECT s.incident_id, s.side, s.seq, s.action, s.from_status, s.to_status,"
                    " s.actor, s.actor_side, s.note, s.payload, s.at, p.hash,"
                    " incident_event_digest(p.hash, ROW(NULL, s.incident_id, s.side, s.seq,"
                    "   s.action, s.from_status, s.to_status, s.actor, s.actor_side, s.note,"
                    "   s.payload, s.at, NULL, NULL)::incident_events)"
                    " FROM {} s LEFT JOIN incident_events p"
                    "   ON p.incident_id = s.incident_id AND p.seq = s.seq - 1"
                    " WHERE s.seq = %s"
                ).format(st),
                (lv["seq"],),
            )
            n += cur.rowcount
        conn.execute("ALTER TABLE incident_events ENABLE TRIGGER incident_events_chain")
    return n


def sibling(conn: Conn) -> Conn | None:
    """A second connection to ``conn``'s database (same user and credentials, autocommit),
    to read beside it; None when ``conn`` is inside a transaction, whose uncommitted changes a
    second connection would not see."""
    from psycopg.pq import TransactionStatus

    from layers.db import connect

    if conn.info.transaction_status != TransactionStatus.IDLE:
        return None
    return connect(conn.info.dsn, password=conn.info.password, autocommit=True)


def reroute_cases(
    conn: Conn,
    *,
    open_only: bool,
    radius_m: float,
    mechanisms: Mapping[str, str | None],
    candidates: bool = False,
    ids: Sequence[str] | None = None,
    far: bool = False,
    half: int | None = None,
    fix_max_age_s: float = FRESH_FIX_S,
) -> Any:
    """The cases to re-route with their facts, as a pandas DataFrame (COPY out, parsed in C):
    with ``candidates``, only those staged in ``_reroute_candidates`` (``layers.changes``);
    with ``ids``, only those; with ``half`` (0 or 1), one of two disjoint halves of them.
    ``mechanisms``: each category's. ``fix_max_age_s``: how old a member's fix may be, as of
    the case's decision, to place a team."""
    import io

    import pandas as pd

    from layers.db import sql

    buf = io.BytesIO()
    only = ""
    if candidates:
        only += "  AND i.id IN (SELECT c.id FROM _reroute_candidates c)\n"
    if ids is not None:
        only += "  AND i.id = ANY (%(ids)s::uuid[])\n"
    if half is not None:
        only += f"  AND (hashtext(i.id::text) & 1) = {int(half)}\n"
    cats = sorted(mechanisms)
    params = {"open_only": open_only, "radius_m": radius_m, "far": far, "categories": cats,
              "mechanisms": [mechanisms[c] for c in cats], "ids": list(ids or ()),
              "fix_max_age_s": fix_max_age_s}  # fmt: skip
    stmt = ClientCursor(conn).mogrify(sql("reroute_cases").replace("{candidates}", only), params)
    with (
        translate_errors(),
        conn.cursor() as cur,
        cur.copy(f"COPY ({stmt}) TO STDOUT") as cp,
    ):
        for block in cp:
            buf.write(block)
    buf.seek(0)
    names = ["id", "code", "status", "category", "severity", "occurred", "lon", "lat", "extent",
             "parties", "old_mechanism", "old_sides", "old_teams", "old_contacts", "key",
             "facts"]  # fmt: skip
    return pd.read_csv(
        buf,
        sep="\t",
        header=None,
        names=names,
        quoting=3,
        keep_default_na=False,
        na_values={"occurred": ["\\N"]},
        dtype={n: str for n in names if n not in ("occurred", "lon", "lat")}
        | {"occurred": float, "lon": float, "lat": float},
        engine="c",
    )


def write_reroute(
    conn: Conn, rows: Iterable[Sequence[Any]], *, actor: dict[str, Any], note: str, at: Any
) -> int:
    """Stage re-routed cases with COPY, then one UPDATE and one INSERT of events; return how many
    cases were written. ``rows``: id, status, side, sides, cross_boundary, reasons, mechanism,
    distance_to_border_m, grid_code, police_grid_code, teams, contacts, routing, routing_sig,
    diff."""
    from layers.db import sql

    with translate_errors(), conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE _reroute (id uuid PRIMARY KEY, status text, side text, sides text[],"
            " cross_boundary boolean, reasons text[], mechanism text,"
            " distance_to_border_m double precision, grid_code text, police_grid_code text,"
            " teams jsonb, contacts jsonb, routing jsonb, routing_sig text, diff jsonb) ON COMMIT DROP"
        )
        copy_rows(
            conn,
            "_reroute",
            [
                "id",
                "status",
                "side",
                "sides",
                "cross_boundary",
                "reasons",
                "mechanism",
                "distance_to_border_m",
                "grid_code",
                "police_grid_code",
                "teams",
                "contacts",
                "routing",
                "routing_sig",
                "diff",
            ],
            rows,
        )
        conn.execute("ANALYZE _reroute")
        cur = conn.execute(sql("reroute_write"), {"actor": Jsonb(actor), "note": note, "at": at})
        return cur.rowcount
