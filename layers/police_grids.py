"""Police grids (警格 / 警务区): beats under a police station, with a community officer."""

from __future__ import annotations

from gis.importing import FieldRule, ImportRules
from layers.registry import LayerSpec, register

SPEC = register(
    LayerSpec(
        id="police_grids",
        title="Police grids",
        description="Police beats (警格) of both sides, each under a police station (派出所).",
        table="police_grids",
        geometry_column="geom",
        geometry_type="MultiPolygon",
        id_column="code",
        public=("code", "name", "station", "officer_name", "side", "synthetic"),
        private=("officer_phone",),
        temporal="updated_at",
        style={"color": "#6a51a3", "weight": 2, "dashArray": "6 4", "fillOpacity": 0.0},
        import_rules=ImportRules(
            layer="police_grids",
            fields=(
                FieldRule("code", "code", required=True, pattern=r"[0-9]{6}[-A-Za-z0-9]{1,30}"),
                FieldRule("name", "name", required=True),
                FieldRule("station", "station", required=True),
                FieldRule("officer_name", "officer_name"),
                FieldRule("officer_phone", "officer_phone"),
                FieldRule("side", "side", pattern=r"[0-9]{6}"),
                FieldRule("synthetic", "synthetic", kind="bool", default=False),
            ),
        ),
    )
)
