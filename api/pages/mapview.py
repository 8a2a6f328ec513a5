"""``/map``: the command-centre map (folium), and the data endpoints it polls.

The page is a folium map whose every script and style sheet comes from this server. Its layers
are drawn from the layer registry (``layers.mapdata.views``); each loads its GeoJSON from
``/map/data/layers/{view}`` for the box in view, simplified to the zoom. The incidents are a
Realtime layer (leaflet-realtime) polling ``/map/data/incidents``, which answers with counted
cells at low zoom and single cases when zoomed in; the heat map polls ``/map/data/heat``.
Filters, visible layers and the view live in the URL, so an operator can share what they see.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import folium
from branca.element import Element, MacroElement
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from folium.elements import JSCSSMixin
from folium.map import Layer
from folium.plugins import HeatMap, Realtime
from folium.template import Template
from folium.utilities import JsCode

from api import params
from api.access import Principal, allow
from api.deps import CatalogueDep, Conn
from api.pages import config
from api.pages.filters import (
    WINDOW_LABELS,
    WINDOWS,
    Filters,
    bbox_to_wgs84,
    parse_filters,
    parse_zoom,
    scoped,
)
from api.security import add_nonce, nonce_of
from api.settings import MapSettings
from gis.catalogue import Catalogue
from gis.errors import InvalidInput, NotFound
from gis.workflow import STATUSES
from layers import mapdata

router = APIRouter(tags=["map"])

GEOJSON = "application/geo+json"
NO_STORE = {"Cache-Control": "no-store"}
# Used only before any district is loaded: the two sides' box (WGS84).
DEFAULT_EXTENT = (105.07, 29.79, 106.02, 30.59)


def _folium_links(
    names: list[tuple[str, str]], local: dict[str, str], dropped: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    missing = [n for n, _ in names if n not in local and n not in dropped]
    if missing:  # a folium upgrade added a library: serve it too before shipping
        raise RuntimeError(f"no local copy of folium's {missing}")
    return [(n, local[n]) for n, _ in names if n in local]


class LocalMap(folium.Map):
    """A folium map that loads Leaflet, jQuery, Bootstrap and friends from this server."""


LocalMap.default_js = [
    *_folium_links(folium.Map.default_js, config.FOLIUM_JS),
    ("jointgrid_styles", config.static("styles.js")),
    ("jointgrid_map", config.static("map.js")),
]
LocalMap.default_css = [
    *_folium_links(folium.Map.default_css, config.FOLIUM_CSS, config.DROPPED_CSS),
    ("jointgrid_map_css", config.static("map.css")),
]


class LocalHeatMap(HeatMap):
    """folium's heat map with Leaflet.heat served here; its points are loaded by the page."""


LocalHeatMap.default_js = _folium_links(HeatMap.default_js, config.FOLIUM_JS)


class IncidentRealtime(Realtime):
    """folium's Realtime layer, served here, added to the map as itself (so the layer control
    shows its real state) and started by the page once the view is set."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
            var {{ this.get_name() }} = L.realtime(
                {{ this.src.js_code }},
                {{ this.options | tojavascript }}
            );
        {% endmacro %}
        """
    )


IncidentRealtime.default_js = [
    *_folium_links(Realtime.default_js, config.FOLIUM_JS),
    ("markerclusterjs", config.FOLIUM_JS["markerclusterjs"]),
]
IncidentRealtime.default_css = [
    ("markerclustercss", config.FOLIUM_CSS["markerclustercss"]),
    ("markerclusterdefaultcss", config.FOLIUM_CSS["markerclusterdefaultcss"]),
]


class ServerLayer(JSCSSMixin, Layer):
    """A registry layer whose GeoJSON the page fetches for the box in view (see map.js)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
            var {{ this.get_name() }} = JointGrid.serverLayer({{ this.config | tojson }});
        {% endmacro %}
        """
    )

    def __init__(self, view: mapdata.MapView, *, show: bool) -> None:
        super().__init__(name=view.title, overlay=True, control=True, show=show)
        self._name = "ServerLayer"
        self.config = {
            "id": view.id,
            "url": f"/map/data/layers/{view.id}",
            "min_zoom": view.min_zoom,
            "by_bbox": view.by_bbox,
            "style": view.map_style(),
            "point": view.is_point,
            "label": view.label,
            "title": view.title,
        }


class PageScript(MacroElement):
    """Starts the page's behaviour once every layer exists: ``JointGrid.init(map, …)``."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
            JointGrid.init({{ this._parent.get_name() }}, {{ this.config | tojson }}, {
                incidents: {{ this.incidents }},
                heat: {{ this.heat }},
                control: {{ this.control }},
                layers: { {% for id, name in this.layers.items() %}{{ id | tojson }}: {{ name }},{% endfor %} }
            });
        {% endmacro %}
        """
    )

    def __init__(
        self,
        cfg: dict[str, Any],
        *,
        incidents: str,
        heat: str,
        control: str,
        layers: dict[str, str],
    ) -> None:
        super().__init__()
        self._name = "PageScript"
        self.config = cfg
        self.incidents = incidents
        self.heat = heat
        self.control = control
        self.layers = layers


def _visible(args: dict[str, str], views: list[mapdata.MapView]) -> set[str]:
    """The overlays to show: ``layers=`` from the URL, or each view's default."""
    names = {v.id for v in views} | {"incidents", "heat"}
    given = args.get("layers")
    if given is None:
        return {v.id for v in views if v.show} | {"incidents"}
    return set(params.parse_csv(given, name="layers", valid=names))


def build_map(
    *,
    filters: Filters,
    args: dict[str, str],
    catalogue: Catalogue,
    sides: dict[str, str],
    extent: tuple[float, float, float, float] | None,
    tiles: MapSettings,
    refresh_s: float,
    csrf: str | None = None,
    nonce: str = "",
) -> str:
    """The whole ``/map`` page as HTML; ``nonce`` is the response's CSP nonce (``api.security``),
    ``csrf`` the session's token for the sign-out button."""
    views = mapdata.views()
    visible = _visible(args, views)
    w, s, e, n = extent or DEFAULT_EXTENT
    fig = folium.Figure(title="JointGrid command centre 联合网格指挥中心")
    m = LocalMap(
        location=[(s + n) / 2, (w + e) / 2],
        zoom_start=10,
        tiles=None,
        prefer_canvas=True,
        control_scale=True,
    )
    m.options.update(maxZoom=19, minZoom=6)  # no tile layer to take them from
    fig.add_child(m)
    fig.header.add_child(Element('<link rel="icon" href="data:,">'), name="no_favicon")
    if tiles.tiles_url:
        folium.TileLayer(
            tiles=tiles.tiles_url,
            attr=tiles.tiles_attribution or "base map",
            name=f"Base map ({tiles.tiles_crs.upper()})",
            overlay=False,
            control=True,
            max_zoom=19,
        ).add_to(m)
    layer_vars: dict[str, str] = {}
    for v in views:
        layer = ServerLayer(v, show=v.id in visible)
        layer.add_to(m)
        layer_vars[v.id] = layer.get_name()
    heat = LocalHeatMap(
        [],
        name=f"Heat map, last {mapdata.HEAT_DAYS} days 热力图",
        show="heat" in visible,
        radius=18,
        blur=14,
        min_opacity=0.35,
        max_zoom=14,
    )
    heat.add_to(m)
    incidents = IncidentRealtime(
        JsCode("JointGrid.incidentSource"),
        start=False,
        interval=int(refresh_s * 1000),
        get_feature_id=JsCode("JointGrid.featureKey"),
        remove_missing=True,
        container=JsCode("JointGrid.incidentContainer()"),  # type: ignore[arg-type]
        point_to_layer=JsCode("JointGrid.incidentMarker"),
        on_each_feature=JsCode("JointGrid.incidentFeature"),
    )
    incidents.layer_name = "Incidents 事件"
    incidents.show = "incidents" in visible
    incidents.add_to(m)
    control = folium.LayerControl(position="topright", collapsed=False)
    control.add_to(m)
    cfg = {
        "bounds": [[s, w], [n, e]],
        "refresh_ms": int(refresh_s * 1000),
        "crs": tiles.tiles_crs,
        "urls": {
            "incidents": "/map/data/incidents",
            "heat": "/map/data/heat",
            "popup": "/map/popup/",
            "dashboard": "/dashboard",
        },
        "mechanism_colours": config.MECHANISM_COLOURS,
        "fallback_colour": config.FALLBACK_COLOUR,
        "status_shapes": config.STATUS_SHAPES,
        "detail_zoom": mapdata.DETAIL_ZOOM,
        "default_layers": sorted({v.id for v in views if v.show} | {"incidents"}),
        "filter_keys": ["status", "mechanism", "side", "category", "window", "since", "until"],
    }
    m.add_child(
        PageScript(
            cfg,
            incidents=incidents.get_name(),
            heat=heat.get_name(),
            control=control.get_name(),
            layers=layer_vars,
        )
    )
    panel = (
        config.templates()
        .get_template("map_panel.html")
        .render(
            filters=filters,
            catalogue=catalogue,
            sides=sides,
            statuses=STATUSES,
            windows=[(k, WINDOW_LABELS[k]) for k in WINDOWS],
            mechanism_colours=config.MECHANISM_COLOURS,
            shape_labels=config.SHAPE_LABELS,
            status_shapes=config.STATUS_SHAPES,
            views=views,
            heat_days=mapdata.HEAT_DAYS,
            tiles=tiles,
            query=filters.raw,
            csrf=csrf,
        )
    )
    fig.html.add_child(Element(panel))
    # folium's templates take no nonce: put it on the tags of the page it renders (all of them
    # built here, every value escaped; the panel is an autoescaped template).
    return add_nonce(str(fig.render()), nonce)


def _sides(conn: Conn) -> dict[str, str]:
    return mapdata.district_names(conn)


def _filters(
    request: Request, conn: Conn, catalogue: Catalogue, now: datetime, who: Principal
) -> Filters:
    return scoped(
        parse_filters(dict(request.query_params), catalogue, sides=set(_sides(conn)), now=now), who
    )


def _bbox(text: str | None, crs: str) -> tuple[float, float, float, float]:
    box = params.parse_bbox(text)
    if box is None:
        raise InvalidInput(
            "bbox is required: west,south,east,north of the map view",
            {"example": "105.4,30.1,105.7,30.3"},
        )
    out = bbox_to_wgs84(box, crs)
    assert out is not None
    return out


# Operators and admins watch the command centre; an operator sees its side's cases and the
# cross-boundary cases involving its side, as in the case API.
CommandCentre = Annotated[Principal, allow("operator", "admin")]


@router.get("/map", response_class=HTMLResponse, summary="The command-centre map")
def map_page(
    request: Request, conn: Conn, catalogue: CatalogueDep, who: CommandCentre
) -> HTMLResponse:
    now = datetime.now(UTC)
    filters = _filters(request, conn, catalogue, now, who)
    html = build_map(
        filters=filters,
        args=dict(request.query_params),
        catalogue=catalogue,
        sides=_sides(conn),
        extent=mapdata.extent(conn),
        tiles=MapSettings(),
        refresh_s=_refresh(request),
        csrf=who.csrf,
        nonce=nonce_of(request),
    )
    return HTMLResponse(html, headers=NO_STORE)


BBoxParam = Annotated[str | None, Query(description="west,south,east,north in the map's frame")]
ZoomParam = Annotated[str | None, Query(description="zoom level")]


def _case_view(
    request: Request,
    conn: Conn,
    catalogue: Catalogue,
    who: Principal,
    bbox: str | None,
    z: str | None,
) -> dict[str, Any]:
    """The box, zoom, filters, time and output frame that the incident and heat data share."""
    now = datetime.now(UTC)
    crs = MapSettings().tiles_crs
    return {
        "bbox": _bbox(bbox, crs),
        "zoom": parse_zoom(z),
        "filters": _filters(request, conn, catalogue, now, who).query,
        "now": now,
        "out_crs": crs,
    }


def _refresh(request: Request) -> float:
    """The incident refresh interval: ``refresh=`` seconds in the URL (2 to 3600) or the setting."""
    text = request.query_params.get("refresh")
    if not text:
        return config.page_settings().map_refresh_s
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput("refresh must be a number of seconds", {"refresh": text[:20]}) from None
    if not 2 <= value <= 3600:
        raise InvalidInput("refresh must be between 2 and 3600 seconds", {"refresh": value})
    return value


@router.get(
    "/map/data/layers/{view_id}",
    summary="GeoJSON of one map layer in the box in view, simplified to the zoom",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}},
)
def layer_data(
    view_id: str,
    conn: Conn,
    who: CommandCentre,
    bbox: BBoxParam = None,
    z: ZoomParam = None,
) -> Response:
    try:
        v = mapdata.view(view_id)
    except KeyError:
        raise NotFound(
            f"no map layer {view_id!r}", {"layers": [x.id for x in mapdata.views()]}
        ) from None
    crs = MapSettings().tiles_crs
    box = bbox_to_wgs84(params.parse_bbox(bbox), crs)
    text = mapdata.view_geojson(conn, v, bbox=box, zoom=parse_zoom(z), out_crs=crs)
    return Response(text, media_type=GEOJSON, headers={"Cache-Control": "max-age=60"})


@router.get(
    "/map/data/incidents",
    summary="Incidents in the box in view: counted cells, or single cases when zoomed in",
    response_class=Response,
    responses={200: {"content": {GEOJSON: {}}}},
)
def incident_data(
    request: Request,
    conn: Conn,
    who: CommandCentre,
    catalogue: CatalogueDep,
    bbox: BBoxParam = None,
    z: ZoomParam = None,
) -> Response:
    text = mapdata.incidents_geojson(conn, **_case_view(request, conn, catalogue, who, bbox, z))
    return Response(text, media_type=GEOJSON, headers=NO_STORE)


@router.get(
    "/map/data/heat",
    summary=f"Heat-map points of the cases reported in the last {mapdata.HEAT_DAYS} days",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
def heat_data(
    request: Request,
    conn: Conn,
    who: CommandCentre,
    catalogue: CatalogueDep,
    bbox: BBoxParam = None,
    z: ZoomParam = None,
) -> Response:
    text = mapdata.heat_json(conn, **_case_view(request, conn, catalogue, who, bbox, z))
    return Response(text, media_type="application/json", headers=NO_STORE)


@router.get(
    "/map/popup/{case_id}",
    response_class=HTMLResponse,
    summary="An incident's popup: routing, teams and contacts on each side, due time, trace",
)
def popup(case_id: str, conn: Conn, catalogue: CatalogueDep, who: CommandCentre) -> HTMLResponse:
    row = mapdata.popup_case(conn, case_id)
    if row is None or (who.role != "admin" and who.side not in row["sides"]):
        raise NotFound("no such case, or not visible to this key", {"id": case_id})
    sides = _sides(conn)
    html = (
        config.templates()
        .get_template("popup.html")
        .render(
            case=row,
            catalogue=catalogue,
            sides=sides,
            by_side=_by_side(row, sides),
            colour=config.mechanism_colour(row["mechanism"]),
            severity_colours=config.SEVERITY_COLOURS,
            trace=(row["routing"] or {}).get("trace", []),
        )
    )
    return HTMLResponse(html, headers=NO_STORE)


def _by_side(row: dict[str, Any], sides: dict[str, str]) -> list[dict[str, Any]]:
    """Teams and contacts grouped by side, lead side first."""
    order = [row["lead_side"], *[s for s in row["sides"] if s != row["lead_side"]]]
    for t in row["teams"] or []:
        if t.get("side") not in order:
            order.append(t.get("side"))
    out = []
    for side in order:
        out.append(
            {
                "code": side,
                "name": sides.get(side, side),
                "lead": side == row["lead_side"],
                "teams": [t for t in row["teams"] or [] if t.get("side") == side],
                "contacts": [c for c in row["contacts"] or [] if c.get("side") == side],
            }
        )
    return out
