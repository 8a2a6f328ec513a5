"""``/map``: the command-centre map (folium), and the data endpoints it polls.

The page is a folium map whose every script and style sheet comes from this server. Its layers
are drawn from the layer registry (``layers.mapdata.views``); each loads its GeoJSON from
``/map/data/layers/{view}`` for the box in view, simplified to the zoom. The incidents are a
Realtime layer (leaflet-realtime) polling ``/map/data/incidents``, which answers with counted
cells at low zoom and single cases when zoomed in; the heat map polls ``/map/data/heat``.
Filters, visible layers and the view live in the URL, so an operator can share what they see.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import folium
from branca.element import Element, MacroElement
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from folium.elements import JSCSSMixin
from folium.map import Layer
from folium.plugins import HeatMap, Realtime
from folium.template import Template
from folium.utilities import JsCode

from api import i18n, params
from api.access import Principal, allow, can_see
from api.deps import CatalogueDep, Conn, ReadConn
from api.i18n import trace as trace_text
from api.pages import config, maplook
from api.pages.cases import by_side, locale_of
from api.pages.filters import (
    WINDOWS,
    Filters,
    bbox_to_wgs84,
    parse_filters,
    parse_zoom,
    scoped,
)
from api.security import add_nonce, nonce_of
from api.settings import MapSettings, patrol
from api.usecases import media
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

    def __init__(
        self, view: mapdata.MapView, *, show: bool, title: str, extra: dict[str, Any]
    ) -> None:
        super().__init__(name=title, overlay=True, control=True, show=show)
        self._name = "ServerLayer"
        self.config = {
            "id": view.id,
            "url": f"/map/data/layers/{view.id}",
            "min_zoom": maplook.look(view).min_zoom,
            "by_bbox": view.by_bbox,
            "style": maplook.style(view),
            "point": view.is_point,
            "label": maplook.look(view).label,
            "title": title,
            "refresh_s": maplook.look(view).refresh_s,
            "colour_by": maplook.look(view).colour_by,
            "popup_url": maplook.look(view).popup,
            **extra,
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
        return {v.id for v in views if maplook.look(v).show} | {"incidents"}
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
    loc: str = i18n.DEFAULT,
    csrf: str | None = None,
    nonce: str = "",
) -> str:
    """The whole ``/map`` page as HTML, its text in ``loc`` (Chinese by default); ``nonce`` is
    the response's CSP nonce (``api.security``), ``csrf`` the session's token for sign-out."""
    views = mapdata.views()
    visible = _visible(args, views)
    w, s, e, n = extent or DEFAULT_EXTENT
    colours = config.side_colours(sides)
    fig = folium.Figure(title=f"{i18n.t('map.title', loc)} · {i18n.t('app.name', loc)}")
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
            name=i18n.t("map.base", loc, crs=tiles.tiles_crs.upper()),
            overlay=False,
            control=True,
            max_zoom=19,
        ).add_to(m)
    layer_vars: dict[str, str] = {}
    for v in views:
        extra: dict[str, Any] = {}
        if v.id == "districts":  # each district labelled and coloured by its side
            extra = {
                "side_colours": colours,
                "side_labels": {c: i18n.side_name(c, loc, "label") for c in sides},
            }
        colour_by = maplook.look(v).colour_by
        if colour_by:  # the gap threshold is a setting (JOINTGRID_PATROL_GAP_DAYS)
            extra = {"colour_by": {**colour_by, "gap_days": patrol().gap_days}}
        layer = ServerLayer(v, show=v.id in visible, title=layer_title(v, loc), extra=extra)
        layer.add_to(m)
        layer_vars[v.id] = layer.get_name()
    heat = LocalHeatMap(
        [],
        name=i18n.t("map.heat", loc, days=maplook.HEAT_DAYS),
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
        update_feature=JsCode("JointGrid.updateIncident"),
    )
    incidents.layer_name = i18n.t("map.incidents", loc)
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
        "detail_zoom": maplook.DETAIL_ZOOM,
        "default_layers": sorted({v.id for v in views if maplook.look(v).show} | {"incidents"}),
        "filter_keys": ["status", "mechanism", "side", "category", "window", "since", "until"],
        "urls_case": "/cases/",
        "locale": loc,
        # the catalogue's text the script shows (status bar, popups, cells)
        "messages": {k: v for k, v in i18n.messages(loc).items() if k.startswith(MAP_MESSAGES)},
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
    panel = config.render(
        "map_panel.html",
        loc=loc,
        filters=filters,
        catalogue=catalogue,
        sides=list(sides),
        side_colours=colours,
        statuses=STATUSES,
        windows=list(WINDOWS),
        mechanism_colours=config.MECHANISM_COLOURS,
        shapes=list(dict.fromkeys(config.STATUS_SHAPES.values())),
        views=views,
        layer_title=lambda v: layer_title(v, loc),
        view_style=maplook.style,
        heat_days=maplook.HEAT_DAYS,
        tiles=tiles,
        query=filters.raw,
        csrf=csrf,
    )
    fig.html.add_child(Element(panel))
    # folium's templates take no nonce: put it on the tags of the page it renders (all of them
    # built here, every value escaped; the panel is an autoescaped template).
    return add_nonce(str(fig.render()), nonce)


MAP_MESSAGES = (
    "map.",
    "status.",
    "severity.",
    "mechanism.",
    "category.",
    "time.",
    "case.",
    "view.",
)


def layer_title(v: mapdata.MapView, loc: str) -> str:
    """A map layer's name for people: from the catalogue, else the layer module's own title."""
    key = f"layer.{v.id}"
    return i18n.t(key, loc) if i18n.has(key) else maplook.look(v).title


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

# The field roles (grid workers and team members) place points on the report page: they may load
# the public geometry they need for that, and nothing of the command centre's. Grids are their
# own side's only (joint grids included). Every other view answers them 404, as if absent.
FIELD_VIEWS = frozenset({"districts", "border_line", "border_zone", "villages", "grids"})
FIELD_SIDE_VIEWS = frozenset({"grids"})
MapReader = Annotated[Principal, allow("operator", "admin", "grid_worker", "team_member")]


def field_role(who: Principal) -> bool:
    """Whether this caller sees only the field views of the map data."""
    return who.role in ("grid_worker", "team_member")


@router.get("/map", response_class=HTMLResponse, summary="The command-centre map")
def map_page(
    request: Request, conn: ReadConn, catalogue: CatalogueDep, who: CommandCentre
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
        loc=locale_of(request),
        csrf=who.csrf,
        nonce=nonce_of(request),
    )
    return HTMLResponse(html, headers=NO_STORE)


BBoxParam = Annotated[str | None, Query(description="west,south,east,north in the map's frame")]
ZoomParam = Annotated[str | None, Query(description="zoom level")]


def _case_view(
    request: Request,
    conn: ReadConn,
    catalogue: CatalogueDep,
    who: CommandCentre,
    bbox: BBoxParam = None,
    z: ZoomParam = None,
) -> dict[str, Any]:
    """The box, zoom, filters, time and output frame that the incident and heat data share
    (a dependency of both, asked for a command centre's key)."""
    now = datetime.now(UTC)
    crs = MapSettings().tiles_crs
    return {
        "bbox": _bbox(bbox, crs),
        "zoom": parse_zoom(z),
        "filters": _filters(request, conn, catalogue, now, who).query,
        "now": now,
        "out_crs": crs,
    }


CaseView = Annotated[dict[str, Any], Depends(_case_view)]


def _data(path: str, summary: str, media_type: str) -> Callable[[Any], Any]:
    """A map data route at ``path``, answering ``media_type``."""
    return router.get(path, summary=summary, response_class=Response,
                      responses={200: {"content": {media_type: {}}}})  # fmt: skip


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


@_data(
    "/map/data/layers/{view_id}",
    "GeoJSON of one map layer in the box in view, simplified to the zoom",
    GEOJSON,
)
def layer_data(
    view_id: str,
    conn: ReadConn,
    who: MapReader,
    bbox: BBoxParam = None,
    z: ZoomParam = None,
) -> Response:
    field = field_role(who)
    allowed = [x.id for x in mapdata.views() if not field or x.id in FIELD_VIEWS]
    try:
        if view_id not in allowed:
            raise KeyError(view_id)
        v = mapdata.view(view_id)
    except KeyError:
        raise NotFound(f"no map layer {view_id!r}", {"layers": allowed}) from None
    crs = MapSettings().tiles_crs
    box = bbox_to_wgs84(params.parse_bbox(bbox), crs)
    side = who.side if field and view_id in FIELD_SIDE_VIEWS else None
    text = mapdata.view_geojson(conn, v, bbox=box, zoom=parse_zoom(z), out_crs=crs, side=side)
    # private: a grid worker's grids are its own side's (FIELD_SIDE_VIEWS); live layers never stale
    cache = NO_STORE if maplook.look(v).refresh_s else {"Cache-Control": "private, max-age=60"}
    return Response(text, media_type=GEOJSON, headers=cache)


@_data(
    "/map/data/incidents",
    "Incidents in the box in view: counted cells, or single cases when zoomed in",
    GEOJSON,
)
def incident_data(conn: ReadConn, view: CaseView) -> Response:
    text = mapdata.incidents_geojson(conn, **view, **maplook.incident_sizes())
    return Response(text, media_type=GEOJSON, headers=NO_STORE)


@_data(
    "/map/data/heat",
    f"Heat-map points of the cases reported in the last {maplook.HEAT_DAYS} days",
    "application/json",
)
def heat_data(conn: ReadConn, view: CaseView) -> Response:
    text = mapdata.heat_json(conn, **view, **maplook.heat_sizes())
    return Response(text, media_type="application/json", headers=NO_STORE)


@router.get(
    "/map/popup/{case_id}",
    response_class=HTMLResponse,
    summary="An incident's popup: routing, teams and contacts on each side, due time, trace",
)
def popup(
    case_id: str, request: Request, conn: ReadConn, catalogue: CatalogueDep, who: CommandCentre
) -> HTMLResponse:
    row = mapdata.popup_case(conn, case_id)
    if row is None or not can_see(who, row):
        raise NotFound("no such case, or not visible to this key", {"id": case_id})
    loc = locale_of(request)
    pending = [s for s in row["sides"] if s not in row["verified_sides"]]
    html = config.render(
        "popup.html",
        case=row,
        loc=loc,
        description=row["description"],
        by_side=by_side(row, loc),
        reasons=i18n.join((i18n.name("reason", r, loc) for r in row["reasons"]), loc),
        pending=i18n.join((i18n.side_name(s, loc, "short") for s in pending), loc),
        trace=trace_text.render((row["routing"] or {}).get("trace", []), row, loc),
        photos=media.thumbnails(conn, row["id"], admin=who.role == "admin"),
    )
    return HTMLResponse(html, headers=NO_STORE)
