"""Bulk storage for province-scale data: COPY in, COPY out, and set-wise writes.

Row-by-row INSERTs cost a round trip and a parse each; COPY streams rows in one statement.
Geometry goes in as hex EWKB with SRID 4326 and comes out as WKB, read by shapely in bulk.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import shapely
from psycopg import ClientCursor
from psycopg import sql as q
from psycopg.types.json import Jsonb

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


def reference(conn: Conn) -> Any:
    """Every reference layer the routing facts are drawn from, as ``gis.bulkfacts.Reference``."""
    from gis.bulkfacts import Layer, Reference

    parts = fetch_layer(conn, "SELECT side, ST_AsBinary(geom) AS wkb FROM side_parts ORDER BY id")
    with translate_errors():
        areas = {
            r["code"]: (r["name"], r["level"], r["parent_code"])
            for r in conn.execute("SELECT code, name, level, parent_code FROM areas")
        }
    villages = fetch_layer(
        conn,
        "SELECT code, ST_AsBinary(geom) AS wkb FROM areas WHERE level = 'village' ORDER BY code",
    )
    grids = fetch_layer(
        conn,
        "SELECT g.code, g.name, g.side, g.village_code, g.joint, g.chief_name, g.chief_phone,"
        " CASE WHEN g.joint THEN ARRAY(SELECT d.code FROM areas d WHERE d.level = 'district'"
        "   AND ST_Intersects(d.geom, g.geom) AND NOT ST_Touches(d.geom, g.geom) ORDER BY d.code)"
        " ELSE ARRAY[g.side] END AS spans, ST_AsBinary(g.geom) AS wkb FROM grids g ORDER BY g.code",
    )
    police = fetch_layer(
        conn,
        "SELECT code, name, side, station, officer_name, officer_phone, ST_AsBinary(geom) AS wkb"
        " FROM police_grids ORDER BY code",
    )
    with translate_errors():
        trows = conn.execute(
            "SELECT code, name, kind, side, sides, mechanisms, roster,"
            " ST_AsBinary(patrol_area) AS patrol, ST_AsBinary(base) AS base FROM teams ORDER BY code"
        ).fetchall()
    teams = [
        {
            **{k: r[k] for k in ("code", "name", "kind", "side", "sides", "mechanisms", "roster")},
            "patrol": shapely.from_wkb(bytes(r["patrol"])),
            "base": shapely.from_wkb(bytes(r["base"])),
        }
        for r in trows
    ]
    chiefs = fetch_layer(
        conn,
        "SELECT code, role, side, name, phone, feature_name, ST_AsBinary(geom) AS wkb FROM chiefs"
        " ORDER BY code",
    )

    def layer(cols: dict[str, list[Any]], names: tuple[str, ...]) -> Layer:
        geoms = cols.pop("geoms", [])
        return Layer(np.asarray(geoms, dtype=object), {k: cols.get(k, []) for k in names})

    return Reference(
        side_parts=layer(parts, ("side",)),
        districts={c: a[0] for c, a in areas.items() if a[1] == "district"},
        areas=areas,
        villages=layer(villages, ("code",)),
        grids=layer(
            grids,
            ("code", "name", "side", "village_code", "joint", "chief_name", "chief_phone", "spans"),
        ),
        police=layer(police, ("code", "name", "side", "station", "officer_name", "officer_phone")),
        teams=teams,
        chiefs=layer(chiefs, ("code", "role", "side", "name", "phone", "feature_name")),
    )


def sibling(conn: Conn) -> Conn | None:
    """A second connection to ``conn``'s database (same user and credentials, autocommit),
    to read beside it; None when ``conn`` is inside a transaction, whose uncommitted changes a
    second connection would not see."""
    from psycopg.pq import TransactionStatus

    from layers.db import connect

    if conn.info.transaction_status != TransactionStatus.IDLE:
        return None
    return connect(conn.info.dsn, password=conn.info.password, autocommit=True)


def reroute_cases(conn: Conn, *, open_only: bool, candidates: bool = False) -> Any:
    """The cases to re-route as a pandas DataFrame (COPY out, parsed in C); with
    ``candidates``, only those staged in ``_reroute_candidates`` (``layers.changes``)."""
    import io

    import pandas as pd

    from layers.db import sql

    buf = io.BytesIO()
    query = sql("reroute_cases")
    if candidates:
        query += "  AND i.id IN (SELECT c.id FROM _reroute_candidates c)\n"
    stmt = ClientCursor(conn).mogrify(query, {"open_only": open_only})
    with (
        translate_errors(),
        conn.cursor() as cur,
        cur.copy(f"COPY ({stmt}) TO STDOUT") as cp,
    ):
        for block in cp:
            buf.write(block)
    buf.seek(0)
    names = ["id", "code", "status", "category", "severity", "occurred", "lon", "lat", "extent",
             "parties", "old_mechanism", "old_sides", "old_teams", "old_contacts"]  # fmt: skip
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
    distance_to_border_m, grid_code, police_grid_code, teams, contacts, routing, diff."""
    from layers.db import sql

    with translate_errors(), conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE _reroute (id uuid PRIMARY KEY, status text, side text, sides text[],"
            " cross_boundary boolean, reasons text[], mechanism text,"
            " distance_to_border_m double precision, grid_code text, police_grid_code text,"
            " teams jsonb, contacts jsonb, routing jsonb, diff jsonb) ON COMMIT DROP"
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
                "diff",
            ],
            rows,
        )
        conn.execute("ANALYZE _reroute")
        cur = conn.execute(sql("reroute_write"), {"actor": Jsonb(actor), "note": note, "at": at})
        return cur.rowcount
