"""Administrative areas: district (one per side), town, village."""

from __future__ import annotations

from gis.importing import FieldRule, ImportRules
from layers.registry import LayerSpec, register

SPEC = register(
    LayerSpec(
        id="areas",
        title="Administrative areas",
        description="Districts (one per side), towns and villages of both sides.",
        table="areas",
        geometry_column="geom",
        geometry_type="MultiPolygon",
        id_column="code",
        public=("code", "name", "name_en", "level", "parent_code", "side", "synthetic"),
        temporal="updated_at",
        style={"color": "#555555", "weight": 1, "fillOpacity": 0.0},
        import_rules=ImportRules(
            layer="areas",
            fields=(
                FieldRule("code", "code", required=True, pattern=r"[0-9]{6}([0-9]{3}){0,2}"),
                FieldRule("name", "name", required=True),
                FieldRule("name_en", "name_en"),
                FieldRule("level", "level", required=True, choices=("district", "town", "village")),
                FieldRule("parent", "parent_code", aliases=("parent_code",)),
                FieldRule("side", "side", pattern=r"[0-9]{6}"),
                FieldRule("synthetic", "synthetic", kind="bool", default=False),
            ),
            parent_field="parent_code",
            parent_is_prefix=True,
            level_code_lengths=(("district", 6), ("town", 9), ("village", 12)),
        ),
    )
)
