"""Joint teams: patrol area (polygon), base (point), duty roster and members from both sides."""

from __future__ import annotations

from typing import Any

from gis.importing import FieldRule, ImportRules
from layers.db import Conn, translate_errors
from layers.registry import LayerSpec, register

SPEC = register(
    LayerSpec(
        id="teams",
        title="Joint teams",
        description="Joint patrol teams with their patrol areas, bases and duty rosters.",
        table="teams",
        geometry_column="patrol_area",
        geometry_type="MultiPolygon",
        id_column="code",
        public=("code", "name", "kind", "side", "sides", "mechanisms", "roster", "synthetic"),
        private=("members",),
        temporal="updated_at",
        style={"color": "#d95f0e", "weight": 2, "fillOpacity": 0.08},
        import_rules=ImportRules(
            layer="teams",
            fields=(
                FieldRule("code", "code", required=True, pattern=r"[-A-Za-z0-9_]{1,40}"),
                FieldRule("name", "name", required=True),
                FieldRule("kind", "kind", required=True),
                FieldRule("side", "side", required=True, pattern=r"[0-9]{6}"),
                FieldRule("sides", "sides", kind="strlist", required=True),
                FieldRule("mechanisms", "mechanisms", kind="strlist", required=True),
                FieldRule("roster", "roster", kind="json", required=True),
                FieldRule("members", "members", kind="json", default=[]),
                FieldRule("base", "base", kind="point", required=True),
                FieldRule("synthetic", "synthetic", kind="bool", default=False),
            ),
            side_from_code=False,
        ),
    )
)


def names(conn: Conn, *, side: str | None = None) -> list[dict[str, Any]]:
    """Teams' code, name and side, by side then code (for pickers and labels): every team, or
    with ``side`` those of that side and those serving it."""
    with translate_errors():
        return conn.execute(
            "SELECT code, name, side FROM teams"
            " WHERE %(side)s::text IS NULL OR side = %(side)s OR %(side)s = ANY(sides)"
            " ORDER BY side, code",
            {"side": side},
        ).fetchall()
