"""Storing checked rows of any importable layer: COPY into a staging table, then one upsert.

Re-loading the same rows changes nothing: a row is updated only when a value or its geometry
differs, so ``updated_at`` stays put and the counts say ``unchanged``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import shapely
from psycopg import sql as q
from psycopg.types.json import Jsonb

from gis.importing import CleanRow
from layers.db import Conn, translate_errors
from layers.registry import LayerSpec


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int
    updated: int
    unchanged: int

    def as_dict(self) -> dict[str, int]:
        return {"inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged}


def _columns(spec: LayerSpec) -> list[str]:
    assert spec.import_rules is not None
    return [f.column for f in spec.import_rules.fields]


def _value(v: Any) -> Any:
    if isinstance(v, dict | list) and not isinstance(v, str):
        return v
    if isinstance(v, shapely.Geometry):
        return shapely.to_wkb(shapely.set_srid(v, 4326), hex=True, include_srid=True)
    return v


def upsert(conn: Conn, spec: LayerSpec, rows: Sequence[CleanRow]) -> UpsertCounts:
    """Insert or update ``rows`` of ``spec``'s table by code, in the caller's transaction."""
    if not rows:
        return UpsertCounts(0, 0, 0)
    cols = _columns(spec)
    geom = spec.geometry_column
    all_cols = [*cols, geom]
    table = q.Identifier(spec.table)
    stage = q.Identifier(f"_stage_{spec.table}")
    ident = q.SQL(", ").join(q.Identifier(c) for c in all_cols)
    json_cols = {f.column for f in spec.import_rules.fields if f.kind == "json"}  # type: ignore[union-attr]
    with translate_errors(), conn.transaction():
        conn.execute(
            q.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS)"
            ).format(stage=stage, table=table)
        )
        conn.execute(q.SQL("TRUNCATE {stage}").format(stage=stage))
        with conn.cursor().copy(
            q.SQL("COPY {stage} ({cols}) FROM STDIN").format(stage=stage, cols=ident)
        ) as copy:
            for r in rows:
                vals = [
                    Jsonb(r.values[c])
                    if c in json_cols and r.values[c] is not None
                    else _value(r.values[c])
                    for c in cols
                ]
                copy.write_row([*vals, _value(r.geom)])
        excluded = q.SQL(", ").join(q.SQL("EXCLUDED.{}").format(q.Identifier(c)) for c in all_cols)
        current = q.SQL(", ").join(q.SQL("t.{}").format(q.Identifier(c)) for c in all_cols)
        sets = q.SQL(", ").join(
            q.SQL("{c} = EXCLUDED.{c}").format(c=q.Identifier(c)) for c in all_cols if c != "code"
        )
        result = conn.execute(
            q.SQL(
                "INSERT INTO {table} AS t ({cols}) SELECT {cols} FROM {stage} "
                "ON CONFLICT (code) DO UPDATE SET {sets}, updated_at = now() "
                "WHERE ({current}) IS DISTINCT FROM ({excluded}) "
                "RETURNING (xmax = 0) AS inserted"
            ).format(
                table=table,
                cols=ident,
                stage=stage,
                sets=sets,
                current=current,
                excluded=excluded,
            )
        ).fetchall()
    inserted = sum(1 for r in result if r["inserted"])
    updated = len(result) - inserted
    return UpsertCounts(inserted, updated, len(rows) - inserted - updated)


def known_codes(conn: Conn, *, table: str, where: str | None = None) -> set[str]:
    """Every ``code`` in ``table`` (optionally filtered by a fixed, trusted clause)."""
    query = q.SQL("SELECT code FROM {}").format(q.Identifier(table))
    if where:
        query = q.SQL("{} WHERE {}").format(query, q.SQL(where))
    with translate_errors():
        return {r["code"] for r in conn.execute(query)}
