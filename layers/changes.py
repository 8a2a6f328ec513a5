"""What changed in the reference layers since the last re-route (migration 0010).

Statement triggers log every change of the areas, grids, police grids, chiefs and teams into
``layer_changes``. A re-route reads the pending rows (``pending``), stages the open cases they
can reach (``stage_candidates``), and when it writes, records itself and consumes the rows it
read in the same transaction as its writes (``record_run``). Rows committed while it ran stay
for the next one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from layers.db import Conn, sql, translate_errors

# One re-route at a time: two would consume the same changes and write the same cases.
REROUTE_LOCK = 0x4A47_5252  # "JGRR"


@dataclass
class Pending:
    """The ``layer_changes`` rows not yet consumed by a re-route."""

    ids: list[int] = field(default_factory=list)
    by_layer: Counter[str] = field(default_factory=Counter)
    teams: bool = False  # a team changed: every cross-boundary case may pick other teams
    unlocated: bool = False  # a change without geometry (a TRUNCATE): only a full pass will do

    def describe(self) -> str:
        if not self.ids:
            return "no layer changes"
        parts = ", ".join(f"{n} in {layer}" for layer, n in sorted(self.by_layer.items()))
        return f"{len(self.ids)} layer change(s): {parts}"


def last_run(conn: Conn) -> dict[str, Any] | None:
    """The latest recorded re-route (mode, catalogue digest, when), or None."""
    with translate_errors():
        return conn.execute(
            "SELECT id, at, mode, catalogue, examined, changed FROM reroute_runs"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()


def pending(conn: Conn) -> Pending:
    """The changes logged since the last re-route that wrote."""
    out = Pending()
    with translate_errors():
        rows = conn.execute(
            "SELECT id, layer, old_geom IS NULL AND new_geom IS NULL AS unlocated"
            " FROM layer_changes ORDER BY id"
        ).fetchall()
    for r in rows:
        out.ids.append(r["id"])
        out.by_layer[r["layer"]] += 1
        if r["layer"] == "teams":
            out.teams = True
        elif r["unlocated"]:
            out.unlocated = True
    return out


def stage_candidates(conn: Conn, changes: Pending, *, reach_m: float) -> int:
    """Stage into the temp table ``_reroute_candidates`` the ids of the open cases that
    ``changes`` can reach (``layers/sql/reroute_candidates.sql``); return how many."""
    with translate_errors():
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _reroute_candidates (id uuid PRIMARY KEY)")
        conn.execute("TRUNCATE _reroute_candidates")
        with conn.transaction():
            # The planner cannot estimate the pieces (a set-returning subdivision): its cost
            # runs to trillions and JIT compiling took 0.4 s of a 0.9 s staging (2,000
            # changes). SET LOCAL: a failed statement cannot leave the session without JIT.
            conn.execute("SET LOCAL jit = off")
            cur = conn.execute(
                sql("reroute_candidates"),
                {"ids": changes.ids, "reach_m": float(reach_m), "teams": changes.teams},
            )
        conn.execute("ANALYZE _reroute_candidates")
    return max(cur.rowcount, 0)


def drop_candidates(conn: Conn) -> None:
    with translate_errors():
        conn.execute("DROP TABLE IF EXISTS _reroute_candidates")


def record_run(
    conn: Conn, consumed: list[int], *, mode: str, catalogue: str, examined: int, changed: int
) -> None:
    """Record a re-route and consume the changes it read (in the caller's transaction)."""
    with translate_errors():
        conn.execute(
            "INSERT INTO reroute_runs (mode, catalogue, examined, changed) VALUES (%s, %s, %s, %s)",
            (mode, catalogue, examined, changed),
        )
        if consumed:
            conn.execute("DELETE FROM layer_changes WHERE id = ANY (%s)", (consumed,))


def lock(conn: Conn) -> bool:
    """Take the re-route lock for this session; False if another re-route holds it."""
    with translate_errors():
        row = conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (REROUTE_LOCK,)).fetchone()
    return bool(row and row["ok"])


def unlock(conn: Conn) -> None:
    with translate_errors():
        conn.execute("SELECT pg_advisory_unlock(%s)", (REROUTE_LOCK,))
