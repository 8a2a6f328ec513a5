"""Governance grids (网格): the basic unit, each in exactly one village; joint grids run by both sides."""

from __future__ import annotations

from gis.importing import FieldRule, ImportRules
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
