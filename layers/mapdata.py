"""Data for the command-centre map and the dashboard, aggregated and serialised in PostGIS.

Every layer of the registry is drawn through one or more *map views* (the areas layer, for
example, as districts, towns and villages). A view's GeoJSON is built by the database with
``ST_AsGeoJSON`` and ``json_agg``, limited to the bounding box in view and simplified to the
zoom level, so no Python object is made per feature.

Incidents are sent one by one only when zoomed in and few enough; otherwise they are counted in
square cells of a world-anchored grid whose size follows the zoom (about 72 screen pixels), so
a screen never holds more than a few hundred markers whatever the number of cases.

When the base map is in GCJ-02 (Amap or Tencent tiles) the geometries are shifted with
``gis.crs.geometry_from_wgs84``: the database still simplifies, limits and describes each
feature, and the shift is one vectorised shapely call over the whole set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import shapely
from psycopg import sql as q

from gis.crs import from_wgs84, geometry_from_wgs84, parse_crs
from gis.workflow import OPEN_STATUSES, STATUSES
from layers.db import Conn, sql, translate_errors
from layers.registry import REGISTRY, LayerSpec

BBox = tuple[float, float, float, float]  # west, south, east, north in degrees

# Overdue is counted exactly as the escalation pass does (layers.incidents.overdue).
OPEN = sorted(OPEN_STATUSES, key=STATUSES.index)


def degrees_per_pixel(zoom: float) -> float:
    """Longitude degrees per screen pixel at a Web-Mercator zoom level (256-pixel tiles)."""
    return 360.0 / (256.0 * 2.0 ** max(0.0, min(zoom, 24.0)))


def digits_for(zoom: float) -> int:
    """Decimal digits of a degree worth sending at ``zoom``: about a tenth of a pixel."""
    return max(3, min(7, math.ceil(-math.log10(degrees_per_pixel(zoom))) + 1))


@dataclass(frozen=True)
class MapView:
    """One drawable subset of a registered layer: which rows, through which geometry.

    ``where`` is a fixed predicate written here (never user input); ``geometry`` names another
    geometry column of the same table (a team's base, say); ``by_bbox`` false loads the whole
    subset at once (a few large features) instead of the part in view.
    """

    id: str
    layer: str
    where: str = "true"
    geometry: str | None = None
    by_bbox: bool = True
    point: bool = False  # the geometry column holds points (markers, not outlines)

    @property
    def spec(self) -> LayerSpec:
        return REGISTRY[self.layer]

    @property
    def geometry_column(self) -> str:
        return self.geometry or self.spec.geometry_column

    @property
    def is_point(self) -> bool:
        return self.point or (self.geometry is None and self.spec.geometry_type == "Point")


# The map's views of the registry's layers, in drawing order: which rows and which geometry
# each draws. A layer not named here gets one view of its own (so a new layer module shows
# up without touching this). How each looks (title, zoom, style) is the faces' business
# (api/pages/maplook.py).
_VIEWS: dict[str, tuple[MapView, ...]] = {
    "areas": (
        MapView("districts", "areas", where="level = 'district'", by_bbox=False),
        MapView("towns", "areas", where="level = 'town'", by_bbox=False),
        MapView("villages", "areas", where="level = 'village'"),
    ),
    "border": (
        MapView("border_zone", "border", where="kind = 'zone'", by_bbox=False),
        MapView("border_line", "border", where="kind = 'line'", by_bbox=False),
    ),
    "grids": (MapView("grids", "grids"),),
    "police_grids": (MapView("police_grids", "police_grids"),),
    "teams": (
        MapView("team_areas", "teams", by_bbox=False),
        MapView("team_bases", "teams", geometry="base", point=True, by_bbox=False),
    ),
    "chiefs": (MapView("chiefs", "chiefs", by_bbox=False),),
    "incidents": (),  # drawn by the incident layer, not as a plain view
}


def views() -> list[MapView]:
    """Every map view, in drawing order (polygons first, points last)."""
    out: list[MapView] = []
    for layer_id in REGISTRY:
        if layer_id in _VIEWS:
            out.extend(_VIEWS[layer_id])
        else:
            spec = REGISTRY[layer_id]
            out.append(MapView(spec.id, spec.id))
    return sorted(out, key=lambda v: v.is_point)


def view(view_id: str) -> MapView:
    """The view with this id; ``KeyError`` if there is none."""
    for v in views():
        if v.id == view_id:
            return v
    raise KeyError(view_id)


@contextmanager
def _short_queries(conn: Conn) -> Iterator[None]:
    """One transaction with JIT compilation off: these queries run in tens of milliseconds, and
    compiling them (0.1 to 1 s on 50,000 cases) would cost more than it saves."""
    with translate_errors(), conn.transaction():
        conn.execute("SET LOCAL jit = off")
        yield


def _envelope(bbox: BBox | None) -> tuple[q.Composable, dict[str, Any]]:
    if bbox is None:
        return q.SQL("true"), {}
    w, s, e, n = bbox
    return (
        q.SQL("ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326)"),
        {"w": w, "s": s, "e": e, "n": n},
    )


def _feature_collection(
    conn: Conn,
    features: q.Composable,
    params: dict[str, Any],
    *,
    digits: int,
    out_crs: str,
    meta: dict[str, Any],
) -> str:
    """A FeatureCollection's text from a query of (fid, geom, props) rows.

    In WGS84 the database writes the whole array of features; otherwise it sends the geometries
    as WKB, and they are shifted together and written with shapely's vectorised functions.
    """
    crs = parse_crs(out_crs)
    head = '{"type":"FeatureCollection","meta":' + json.dumps(meta, default=str)
    with translate_errors():
        if crs in ("wgs84", "cgcs2000"):
            row = conn.execute(
                q.SQL(
                    "SELECT coalesce(json_agg(json_build_object('type', 'Feature', 'id', f.fid,"
                    " 'geometry', ST_AsGeoJSON(f.geom, %(digits)s)::json,"
                    " 'properties', f.props)), '[]')::text AS features FROM ({}) f"
                ).format(features),
                {**params, "digits": digits},
            ).fetchone()
            body = row["features"] if row else "[]"
            return head + ',"features":' + body + "}"
        rows = conn.execute(
            q.SQL(
                "SELECT f.fid::text AS fid, ST_AsBinary(f.geom) AS wkb, f.props::text AS props"
                " FROM ({}) f"
            ).format(features),
            params,
        ).fetchall()
    if not rows:
        return head + ',"features":[]}'
    geoms = shapely.from_wkb([bytes(r["wkb"]) for r in rows])
    geoms = geometry_from_wgs84(geoms, crs)
    geoms = shapely.set_precision(geoms, 10.0**-digits, mode="pointwise")
    texts = shapely.to_geojson(geoms)
    parts = [
        '{"type":"Feature","id":'
        + json.dumps(r["fid"])
        + ',"geometry":'
        + str(g)
        + ',"properties":'
        + r["props"]
        + "}"
        for r, g in zip(rows, texts, strict=True)
    ]
    return head + ',"features":[' + ",".join(parts) + "]}"


def view_geojson(
    conn: Conn,
    v: MapView,
    *,
    bbox: BBox | None,
    zoom: float,
    out_crs: str = "wgs84",
    side: str | None = None,
) -> str:
    """The GeoJSON text of a map view in ``bbox`` (WGS84), simplified to about half a pixel.

    ``side`` keeps only that side's features (and joint ones, where the layer has them): the
    field roles see their own side's grids.
    """
    spec = v.spec
    geom = q.Identifier(v.geometry_column)
    tol = 0.0 if v.is_point else degrees_per_pixel(zoom) * 0.5
    props = q.SQL(", ").join(
        q.SQL("{}, t.{}").format(q.Literal(c), q.Identifier(c)) for c in spec.public
    )
    env, params = _envelope(bbox if v.by_bbox else None)
    where_bbox = (
        q.SQL("t.{} && {}").format(geom, env) if bbox is not None and v.by_bbox else q.SQL("true")
    )
    simplified = (
        q.SQL("t.{}").format(geom)
        if tol == 0
        else q.SQL("ST_SimplifyPreserveTopology(t.{}, %(tol)s)").format(geom)
    )
    where_side: q.Composable = q.SQL("true")
    if side is not None:
        joint = q.SQL(" OR t.joint") if "joint" in spec.public else q.SQL("")
        where_side = q.SQL("(t.side = %(side)s{})").format(joint)
    features = q.SQL(
        "SELECT t.{id}::text AS fid, {simplified} AS geom, json_build_object({props}) AS props"
        " FROM {table} t WHERE {bbox} AND {side} AND ({where}) ORDER BY t.{id}"
    ).format(
        side=where_side,
        id=q.Identifier(spec.id_column),
        simplified=simplified,
        props=props,
        table=q.Identifier(spec.table),
        bbox=where_bbox,
        where=q.SQL(v.where),  # a fixed predicate written in this module
    )
    with _short_queries(conn):
        return _feature_collection(
            conn,
            features,
            {**params, "tol": tol, "side": side},
            digits=digits_for(zoom),
            out_crs=out_crs,
            meta={"view": v.id, "zoom": zoom, "crs": parse_crs(out_crs)},
        )


@dataclass(frozen=True)
class CaseFilter:
    """Which cases to show. Empty tuples mean "any". ``"none"`` among the mechanisms selects
    single-side cases (no mechanism). Times filter the report time."""

    statuses: tuple[str, ...] = ()
    mechanisms: tuple[str, ...] = ()
    sides: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    scope_side: str | None = None  # access: only cases involving this side (operators)

    def where(self, alias: str = "i") -> tuple[q.Composable, dict[str, Any]]:
        """The SQL predicate on the incidents table (aliased ``alias``) and its parameters."""
        a = q.Identifier(alias)
        parts: list[q.Composable] = [q.SQL("true")]
        params: dict[str, Any] = {}
        if self.statuses:
            parts.append(q.SQL("{}.status = ANY(%(f_statuses)s)").format(a))
            params["f_statuses"] = list(self.statuses)
        if self.mechanisms:
            named = [m for m in self.mechanisms if m != "none"]
            parts.append(
                q.SQL(
                    "({a}.mechanism = ANY(%(f_mechs)s) OR (%(f_mech_none)s AND {a}.mechanism IS NULL))"
                ).format(a=a)
            )
            params["f_mechs"] = named
            params["f_mech_none"] = "none" in self.mechanisms
        if self.sides:
            parts.append(q.SQL("{}.sides && %(f_sides)s::text[]").format(a))
            params["f_sides"] = list(self.sides)
        if self.scope_side is not None:
            parts.append(q.SQL("%(f_scope)s = ANY({}.sides)").format(a))
            params["f_scope"] = self.scope_side
        if self.categories:
            parts.append(q.SQL("{}.category = ANY(%(f_cats)s)").format(a))
            params["f_cats"] = list(self.categories)
        if self.since is not None:
            parts.append(q.SQL("{}.reported_at >= %(f_since)s").format(a))
            params["f_since"] = self.since
        if self.until is not None:
            parts.append(q.SQL("{}.reported_at < %(f_until)s").format(a))
            params["f_until"] = self.until
        return q.SQL(" AND ").join(parts), params


def incidents_geojson(
    conn: Conn,
    *,
    bbox: BBox,
    zoom: float,
    filters: CaseFilter,
    now: datetime,
    out_crs: str = "wgs84",
    detail_zoom: int,
    detail_max: int,
    cell_px: float,
) -> str:
    """Incidents in ``bbox``: single features from ``detail_zoom`` on when at most
    ``detail_max``, else counts in square cells of about ``cell_px`` screen pixels.

    ``meta.mode`` says which: ``incidents`` (properties for the marker; the popup is fetched
    when opened) or ``cells`` (count, overdue, escalated and the count per mechanism).
    """
    where, fparams = filters.where()
    env, eparams = _envelope(bbox)
    params = {**fparams, **eparams, "open": OPEN, "now": now}
    with _short_queries(conn):
        return _incidents(
            conn, where, env, params, zoom, out_crs, now, detail_zoom, detail_max, cell_px
        )


def _incidents(
    conn: Conn,
    where: q.Composable,
    env: q.Composable,
    params: dict[str, Any],
    zoom: float,
    out_crs: str,
    now: datetime,
    detail_zoom: int,
    detail_max: int,
    cell_px: float,
) -> str:
    mode = "cells"
    count = None
    if zoom >= detail_zoom:
        with translate_errors():
            row = conn.execute(
                q.SQL(
                    "SELECT count(*) AS n FROM (SELECT 1 FROM incidents i"
                    " WHERE i.geom && {env} AND {where} LIMIT %(cap)s) c"
                ).format(env=env, where=where),
                {**params, "cap": detail_max + 1},
            ).fetchone()
        count = int(row["n"]) if row else 0
        if count <= detail_max:
            mode = "incidents"
    if mode == "incidents":
        features = q.SQL(sql("map_incident_points")).format(env=env, where=where)
        meta: dict[str, Any] = {"mode": mode, "count": count}
        digits = 6
    else:
        cell = degrees_per_pixel(zoom) * cell_px
        params["cell"] = cell
        features = q.SQL(sql("map_incident_cells")).format(env=env, where=where)
        meta = {"mode": mode, "cell_deg": cell}
        digits = digits_for(zoom)
    meta.update(zoom=zoom, crs=parse_crs(out_crs), at=now.isoformat())
    return _feature_collection(conn, features, params, digits=digits, out_crs=out_crs, meta=meta)


def heat_json(
    conn: Conn,
    *,
    bbox: BBox,
    zoom: float,
    filters: CaseFilter,
    now: datetime,
    out_crs: str = "wgs84",
    days: int,
    cell_px: float,
) -> str:
    """Heat-map points ``[lat, lon, count]`` of the cases reported in the last ``days`` days.

    Cases are counted in cells of about ``cell_px`` screen pixels, so the browser draws at most a few
    thousand weighted points.
    """
    start = now - timedelta(days=days)
    if filters.since is not None and filters.since > start:
        start = filters.since
    cut = CaseFilter(
        statuses=filters.statuses,
        mechanisms=filters.mechanisms,
        sides=filters.sides,
        categories=filters.categories,
        since=start,
        until=filters.until,
    )
    where, fparams = cut.where()
    env, eparams = _envelope(bbox)
    cell = degrees_per_pixel(zoom) * cell_px
    query = q.SQL(sql("map_heat")).format(env=env, where=where)
    crs = parse_crs(out_crs)
    qparams = {**fparams, **eparams, "cell": cell}
    points, top = "[]", 0
    with _short_queries(conn):
        if crs in ("wgs84", "cgcs2000"):
            row = conn.execute(
                q.SQL(
                    "SELECT coalesce(json_agg(json_build_array(round(h.lat::numeric, 6),"
                    " round(h.lon::numeric, 6), h.n)), '[]')::text AS points,"
                    " coalesce(max(h.n), 0) AS top FROM ({}) h"
                ).format(query),
                qparams,
            ).fetchone()
            if row:
                points, top = row["points"], int(row["top"])
            rows = []
        else:
            rows = conn.execute(query, qparams).fetchall()
    if rows:
        x, y = from_wgs84(
            np.array([r["lon"] for r in rows], dtype=float),
            np.array([r["lat"] for r in rows], dtype=float),
            crs,
        )
        n = [int(r["n"]) for r in rows]
        points = json.dumps(
            [
                [round(b, 6), round(a, 6), c]
                for a, b, c in zip(x.tolist(), y.tolist(), n, strict=True)
            ]
        )
        top = max(n)
    meta = {"days": days, "since": start.isoformat(), "cell_deg": cell, "max": top, "crs": crs}
    return '{"meta":' + json.dumps(meta) + ',"points":' + points + "}"


def district_names(conn: Conn) -> dict[str, str]:
    """Side code -> district name."""
    with translate_errors():
        rows = conn.execute(
            "SELECT code, name FROM areas WHERE level = 'district' ORDER BY code"
        ).fetchall()
    return {r["code"]: r["name"] for r in rows}


def extent(conn: Conn) -> BBox | None:
    """The bounding box of every side, WGS84 degrees (None before any district is loaded)."""
    with translate_errors():
        row = conn.execute(
            "SELECT ST_XMin(b) AS w, ST_YMin(b) AS s, ST_XMax(b) AS e, ST_YMax(b) AS n"
            " FROM (SELECT ST_Extent(geom) AS b FROM areas WHERE level = 'district') x"
        ).fetchone()
    if row is None or row["w"] is None:
        return None
    return (row["w"], row["s"], row["e"], row["n"])


def popup_case(conn: Conn, case_id: str) -> dict[str, Any] | None:
    """What an incident's popup shows: the case with its routing, by id or code."""
    with translate_errors():
        return conn.execute(
            "SELECT i.id::text AS id, i.code, i.status, i.category, i.severity, i.mechanism,"
            " i.lead_side, i.side, i.sides, i.cross_boundary, i.reasons, i.teams, i.contacts,"
            " i.routing, i.due_at, i.reported_at, i.occurred_at, i.escalation_level,"
            " i.distance_to_border_m, i.grid_code, i.police_grid_code, i.description,"
            " i.verified_sides, i.reporter,"
            " (i.status = ANY(%(open)s) AND i.due_at < now()) AS overdue,"
            " (SELECT d.code FROM incidents d WHERE d.id = i.possible_duplicate_of) AS duplicate_code"
            " FROM incidents i WHERE i.id::text = %(id)s OR i.code = %(id)s",
            {"id": case_id, "open": OPEN},
        ).fetchone()


def stats(conn: Conn, *, filters: CaseFilter, now: datetime, weeks: int = 12) -> dict[str, Any]:
    """The dashboard's figures in one round trip (see ``sql/map_stats.sql``)."""
    where, params = filters.where()
    with _short_queries(conn):
        row = conn.execute(
            q.SQL(sql("map_stats")).format(where=where),
            {**params, "open": OPEN, "statuses": list(STATUSES), "now": now, "weeks": weeks},
        ).fetchone()
    return dict(row["stats"]) if row else {}


def grid_choropleth(
    conn: Conn, *, filters: CaseFilter, tolerance_m: float = 40.0
) -> dict[str, Any]:
    """Cases per grid with each grid's outline as SVG path data in EPSG:4544 metres.

    y grows downwards, as SVG wants (``ST_AsSVG`` negates it); ``viewbox`` frames the sides.
    """
    where, params = filters.where()
    with _short_queries(conn):
        rows = conn.execute(
            q.SQL(sql("map_grid_svg")).format(where=where),
            {**params, "tol": tolerance_m, "open": OPEN},
        ).fetchall()
        box = conn.execute(
            "SELECT ST_XMin(b) AS x0, ST_YMin(b) AS y0, ST_XMax(b) AS x1, ST_YMax(b) AS y1"
            " FROM (SELECT ST_Extent(ST_Transform(geom, 4544)) AS b FROM areas"
            " WHERE level = 'district') x"
        ).fetchone()
    grids = [r for r in rows if r["kind"] == "grid"]
    outlines = [r for r in rows if r["kind"] != "grid"]
    viewbox = None
    if box and box["x0"] is not None:
        pad = 1000.0
        viewbox = (
            box["x0"] - pad,
            -box["y1"] - pad,
            box["x1"] - box["x0"] + 2 * pad,
            box["y1"] - box["y0"] + 2 * pad,
        )
    return {"grids": grids, "outlines": outlines, "viewbox": viewbox}
