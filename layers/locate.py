"""Location facts: side, area chain, grids, police grids, teams and chiefs for points.

One facts engine, the SQL function ``jointgrid_facts()`` (migration 0018), for one point (a
report, ``/locate``: ``sql/locate.sql``) as for a million (the batch re-route, the province
loader: ``facts_of_points``); its JSON documents are turned into ``gis.facts`` values.

Every caller says as of when its teams' positions are read (``as_of``): now for a report and
``/locate``, the time a case was decided for the batch re-route (``layers/sql/reroute_cases.sql``),
so that a re-route reads the fixes its decision read. Without it a team is placed by its base.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from gis.facts import (
    AreaRef,
    ChiefRef,
    DuplicateRef,
    FixRef,
    GridRef,
    LocationFacts,
    PoliceGridRef,
    SideFact,
    TeamCandidate,
)
from gis.routing import FRESH_FIX_S
from layers.db import Conn, sql, translate_errors

_M_PER_DEG_LAT = 110_574.0
PARTIES_SEP = "\x1f"  # joins the sides a point asks for (a report's parties), per point


@dataclass(frozen=True)
class DuplicateQuery:
    """Look for open cases of ``category`` within ``radius_m`` reported since ``since``."""

    category: str
    radius_m: float
    since: datetime  # the shortest degree of latitude on the ellipsoid, at the equator


def degrees_covering(metres: float, lat: float) -> float:
    """A radius in degrees that surely contains ``metres`` around latitude ``lat`` (index prefilter)."""
    cos = max(math.cos(math.radians(min(abs(lat) + 1.0, 89.0))), 0.01)
    return metres / (_M_PER_DEG_LAT * cos) * 1.01


def facts(
    conn: Conn,
    *,
    lon: float,
    lat: float,
    radius_m: float,
    mechanism: str | None = None,
    extent: BaseGeometry | None = None,
    duplicates: DuplicateQuery | None = None,
    sides: Sequence[str] = (),
    teams_if_cross: bool = False,
    as_of: datetime | None = None,
    fix_max_age_s: float = FRESH_FIX_S,
) -> LocationFacts:
    """Gather the facts for a WGS84 point; ``radius_m`` (metres) bounds the chiefs returned.

    The sides reported are those containing the point or within ``radius_m``, the nearest
    other side, and every side in ``sides`` (e.g. a report's parties) that exists.
    ``teams_if_cross`` (routing, with ``radius_m`` the border zone): the teams only where the
    case can be cross-boundary; a single-side decision never reads them.
    ``as_of``: the time the teams' members' fixes are read as of (each team carries its nearest
    member's fix no older than ``fix_max_age_s`` then, if any); None: by bases alone.
    """
    dup = duplicates
    params = {
        "lon": lon,
        "lat": lat,
        "radius_m": radius_m,
        "mechanism": mechanism,
        "extent": None
        if extent is None
        else shapely.to_wkb(shapely.set_srid(extent, 4326), include_srid=True),
        "category": dup.category if dup else None,
        "dup_radius_m": dup.radius_m if dup else None,
        "dup_since": dup.since if dup else None,
        "sides": PARTIES_SEP.join(sides) or None,
        "teams_if_cross": teams_if_cross,
        "as_of": as_of,
        "fix_max_age_s": fix_max_age_s,
    }
    with translate_errors():
        row = conn.execute(sql("locate"), params).fetchone()
    return to_facts(lon, lat, row["facts"] if row else {})


def _grid(d: dict[str, Any]) -> GridRef:
    return GridRef(**{**d, "spans": tuple(d.get("spans") or ())})


def _police(d: dict[str, Any]) -> PoliceGridRef:
    return PoliceGridRef(**d)


def to_facts(lon: float, lat: float, f: dict[str, Any]) -> LocationFacts:
    """Build ``LocationFacts`` from the JSON document the facts query returns."""
    return LocationFacts(
        lon=lon,
        lat=lat,
        sides=tuple(SideFact(**s) for s in f.get("sides", [])),
        chain=tuple(AreaRef(**a) for a in f.get("chain", [])),
        grids_here=tuple(_grid(g) for g in f.get("grids_here", [])),
        nearest_grids=tuple(_grid(g) for g in f.get("nearest_grids", [])),
        police_here=tuple(_police(p) for p in f.get("police_here", [])),
        nearest_police=tuple(_police(p) for p in f.get("nearest_police", [])),
        teams=tuple(
            TeamCandidate(
                **{
                    **t,
                    "sides": tuple(t["sides"]),
                    "mechanisms": tuple(t["mechanisms"]),
                    "fix": None if t.get("fix") is None else FixRef(**t["fix"]),
                }
            )
            for t in f.get("teams", [])
        ),
        chiefs=tuple(ChiefRef(**c) for c in f.get("chiefs", [])),
        extent_sides=None if f.get("extent_sides") is None else tuple(f["extent_sides"]),
        duplicates=tuple(DuplicateRef(**d) for d in f.get("duplicates", []) or []),
    )


@dataclass
class ManyFacts:
    """The facts of many points: per point the key (md5) of its facts document, and each
    distinct document once, parsed."""

    keys: list[str]
    docs: dict[str, dict[str, Any]]


def facts_of_points(
    conn: Conn,
    lon: Sequence[float],
    lat: Sequence[float],
    *,
    radius_m: float,
    mechanism: Sequence[str | None] | None = None,
    sides: Sequence[Sequence[str]] | None = None,
    far: bool = True,
    as_of: datetime | Sequence[datetime | None] | None = None,
    fix_max_age_s: float = FRESH_FIX_S,
) -> ManyFacts:
    """The facts of many points in one statement (teams only where a case can be
    cross-boundary, as the report path asks). ``sides``: per point, the sides to report
    however far (a report's parties). ``far``: the nearest other side however far
    (its distance is a case's distance to the border); without it, plain facts repeat.
    ``as_of``: the time the teams' fixes are read as of, one for all or per point."""
    import orjson

    query = (
        "WITH f AS (SELECT f.ord, f.facts::text AS t, md5(f.facts::text) AS key"
        " FROM jointgrid_facts(%(lon)s::float8[], %(lat)s::float8[], %(radius_m)s::float8,"
        " %(mechanism)s::text[], p_sides => %(sides)s::text[], p_teams_if_cross => true,"
        " p_far => %(far)s, p_as_of => %(as_of)s::timestamptz[],"
        " p_fix_max_age_s => %(fix_max_age_s)s::float8) f)"
        " SELECT ord, key, CASE WHEN row_number() OVER (PARTITION BY key ORDER BY ord) = 1"
        " THEN t END AS facts FROM f ORDER BY ord"
    )
    params = {
        "lon": [float(x) for x in lon],
        "lat": [float(y) for y in lat],
        "radius_m": radius_m,
        "mechanism": None if mechanism is None else list(mechanism),
        "sides": None if sides is None else [PARTIES_SEP.join(s) or None for s in sides],
        "far": far,
        "as_of": None
        if as_of is None
        else [as_of] * len(lon)
        if isinstance(as_of, datetime)
        else list(as_of),
        "fix_max_age_s": fix_max_age_s,
    }
    keys: list[str] = []
    docs: dict[str, dict[str, Any]] = {}
    from psycopg.rows import tuple_row

    with translate_errors(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(query, params)
        for _ord, key, text in cur.fetchall():
            keys.append(key)
            if text is not None:
                docs[key] = orjson.loads(text)
    return ManyFacts(keys, docs)
