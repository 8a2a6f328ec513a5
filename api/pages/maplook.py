"""How the map shows the layers' views (``layers.mapdata.views``): titles, the zoom from which
each appears, whether it is on by default, its style over the layer's own, its tooltip, and the
pixel sizes and thresholds of the incident and heat layers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from layers.mapdata import MapView

CELL_PX = 72  # side of an incident aggregation cell, in screen pixels
DETAIL_ZOOM = 14  # from this zoom on, single incidents are sent when few enough
DETAIL_MAX = 1500  # ... and at most this many
HEAT_PX = 10  # side of a heat-map cell, in screen pixels
HEAT_DAYS = 30


@dataclass(frozen=True)
class Look:
    """How one view appears in the map's layer control."""

    title: str
    min_zoom: int = 0
    show: bool = True
    style: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None  # the property shown as the tooltip


LOOKS: dict[str, Look] = {
    "districts": Look(
        "District outlines 区县",
        style={"color": "#222222", "weight": 3, "fillOpacity": 0.0},
        label="name",
    ),
    "towns": Look(
        "Towns 镇街", style={"color": "#555555", "weight": 1.5, "fillOpacity": 0.0}, label="name"
    ),
    "villages": Look(
        "Villages 村社区 (zoom ≥ 11)",
        min_zoom=11,
        style={"color": "#8c8c8c", "weight": 0.8, "dashArray": "2 3", "fillOpacity": 0.0},
        label="name",
    ),
    "border_zone": Look(
        "Border zone 边界带",
        style={"color": "#fb9a99", "weight": 0.5, "fillColor": "#fb9a99", "fillOpacity": 0.15},
        label="id",
    ),
    "border_line": Look(
        "Border line 边界线",
        style={"color": "#e31a1c", "weight": 3, "fillOpacity": 0.0},
        label="id",
    ),
    "grids": Look("Grids 网格 (zoom ≥ 13)", min_zoom=13, show=False, label="name"),
    "police_grids": Look("Police grids 警格 (zoom ≥ 12)", min_zoom=12, show=False, label="name"),
    "team_areas": Look("Team patrol areas 巡防区", label="name"),
    "team_bases": Look(
        "Team bases 驻点",
        style={"color": "#7f2704", "fillColor": "#fd8d3c", "radius": 6, "fillOpacity": 0.9},
        label="name",
    ),
    "chiefs": Look("Chiefs' rivers, roads, forests 河长林长路长", show=False, label="feature_name"),
}


def look(view: MapView) -> Look:
    """The look of ``view``; a view of a layer not named above: its layer's title, off."""
    return LOOKS.get(view.id) or Look(view.spec.title, show=False)


def style(view: MapView) -> dict[str, Any]:
    """The view's style over its layer's default style."""
    return {**view.spec.style, **look(view).style}


def incident_sizes() -> dict[str, Any]:
    """What ``layers.mapdata.incidents_geojson`` needs of the map's sizes."""
    return {"detail_zoom": DETAIL_ZOOM, "detail_max": DETAIL_MAX, "cell_px": CELL_PX}


def heat_sizes() -> dict[str, Any]:
    """What ``layers.mapdata.heat_json`` needs of the map's sizes."""
    return {"days": HEAT_DAYS, "cell_px": HEAT_PX}
