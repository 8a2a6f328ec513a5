"""Governance grids (网格): the basic unit, each in exactly one village; joint grids run by both sides."""

from __future__ import annotations

from collections.abc import Iterable

from gis.importing import FieldRule, ImportRules
from layers.db import Conn, translate_errors
from layers.registry import LayerSpec, register

SPEC = register(
    LayerSpec(
        id="grids",
        title="Governance grids",
        description="Governance grids (网格) of both sides, with their grid chief; joint grids are run by both.",
        table="grids",
        geometry_column="geom",
        geometry_type="MultiPolygon",
        id_column="code",
        public=("code", "name", "village_code", "side", "joint", "chief_name", "synthetic"),
        private=("chief_phone", "workers"),
        temporal="updated_at",
        style={"color": "#2b8cbe", "weight": 1, "fillOpacity": 0.05},
        import_rules=ImportRules(
            layer="grids",
            fields=(
                FieldRule("code", "code", required=True, pattern=r"[0-9]{15}"),
                FieldRule("name", "name", required=True),
                FieldRule("village", "village_code", required=True, aliases=("village_code",)),
                FieldRule("side", "side", pattern=r"[0-9]{6}"),
                FieldRule("joint", "joint", kind="bool", default=False),
                FieldRule("chief_name", "chief_name"),
                FieldRule("chief_phone", "chief_phone"),
                FieldRule("workers", "workers", kind="json", default=[]),
                FieldRule("synthetic", "synthetic", kind="bool", default=False),
            ),
            parent_field="village_code",
            parent_is_prefix=True,
        ),
    )
)


def centroids(conn: Conn, codes: Iterable[str]) -> dict[str, tuple[float, float]]:
    """The centroid (WGS84 lon, lat) of each named grid, in one query."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    with translate_errors():
        rows = conn.execute(
            "SELECT code, ST_X(ST_Centroid(geom)) AS x, ST_Y(ST_Centroid(geom)) AS y"
            " FROM grids WHERE code = ANY(%s)",
            (wanted,),
        ).fetchall()
    return {r["code"]: (r["x"], r["y"]) for r in rows}
