"""Chiefs (河长, 林长, 路长, 田长): each answers for a river stretch, forest, road or field on one side."""

from __future__ import annotations

from gis.importing import FieldRule, ImportRules
from layers.registry import LayerSpec, register

SPEC = register(
    LayerSpec(
        id="chiefs",
        title="Chiefs",
        description="River, forest, road and field chiefs, with the feature each answers for.",
        table="chiefs",
        geometry_column="geom",
        geometry_type="Geometry",
        id_column="code",
        public=("code", "role", "side", "name", "feature_name", "synthetic"),
        private=("phone",),
        temporal="updated_at",
        style={"color": "#1a9850", "weight": 3},
        import_rules=ImportRules(
            layer="chiefs",
            fields=(
                FieldRule("code", "code", required=True, pattern=r"[-A-Za-z0-9_]{1,40}"),
                FieldRule("role", "role", required=True),
                FieldRule("side", "side", required=True, pattern=r"[0-9]{6}"),
                FieldRule("name", "name", required=True),
                FieldRule("phone", "phone"),
                FieldRule("feature_name", "feature_name"),
                FieldRule("synthetic", "synthetic", kind="bool", default=False),
            ),
            geometry="line_or_polygon",
            side_from_code=False,
        ),
    )
)
