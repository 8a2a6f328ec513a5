"""The border: the shared line between sides and each side's border zone, derived from ``areas``."""

from __future__ import annotations

from typing import Any

from layers.db import Conn, translate_errors
from layers.registry import LayerSpec, register

SPEC = register(
    LayerSpec(
        id="border",
        title="Border line and zone",
        description="The line shared by the sides and the border zone on each side, derived from the districts.",
        table="border",
        geometry_column="geom",
        geometry_type="Geometry",
        id_column="id",
        public=("id", "kind", "side", "sides", "width_m", "length_m", "area_m2", "derived_at"),
        temporal="derived_at",
        side_column="side",
        style={"color": "#e31a1c", "weight": 3, "fillOpacity": 0.06},
    )
)


def derived(conn: Conn) -> bool:
    """Whether the border has been derived (any line or zone is stored)."""
    with translate_errors():
        row = conn.execute("SELECT EXISTS (SELECT FROM border) AS x").fetchone()
    return bool(row and row["x"])


def derive(conn: Conn, *, width_m: float) -> list[dict[str, Any]]:
    """Re-derive the line and zones from the districts (zone width in metres); return a summary."""
    with translate_errors(), conn.transaction():
        conn.execute("SELECT derive_border(%s)", (width_m,))
        rows = conn.execute(
            "SELECT id, kind, side, sides, width_m, round(length_m::numeric, 1) AS length_m,"
            " round(area_m2::numeric) AS area_m2 FROM border ORDER BY id"
        ).fetchall()
    return [dict(r) for r in rows]
