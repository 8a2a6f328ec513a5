"""JSON shapes of the public answers, built from domain values."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from gis.catalogue import Catalogue
from gis.facts import GridRef, LocationFacts, PoliceGridRef
from gis.location import Placement

_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def flat(obj: Any) -> dict[str, Any]:
    """``dataclasses.asdict`` for flat records (areas, grids, teams, contacts: every field a
    plain value or a tuple of them): the same dict, without asdict's recursive deep copy, which
    was a tenth of a report's Python time."""
    cls = type(obj)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return {name: getattr(obj, name) for name in names}


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


def grid_view(g: GridRef | None) -> dict[str, Any] | None:
    if g is None:
        return None
    d = flat(g)
    d["distance_m"] = _r(g.distance_m)
    return d


def police_view(p: PoliceGridRef | None) -> dict[str, Any] | None:
    if p is None:
        return None
    d = flat(p)
    d["distance_m"] = _r(p.distance_m)
    return d


def locate_view(
    f: LocationFacts, p: Placement, *, input_: dict[str, Any], catalogue: Catalogue
) -> dict[str, Any]:
    """The answer of ``/api/v1/locate``."""
    return {
        "location": {"type": "Point", "coordinates": [round(f.lon, 7), round(f.lat, 7)]},
        "input": input_,
        "side": p.side,
        "side_name": p.side_name,
        "on_line": p.on_line,
        "snapped_m": _r(p.snapped_m),
        "chain": [flat(a) for a in f.chain],
        "grid": grid_view(f.grid_for(p.side) or next(iter(f.grids_here), None)),
        "police_grid": police_view(f.police_for(p.side)),
        "distance_to_border_m": _r(p.distance_to_border_m),
        "nearest_other_side": p.nearest_other_side,
        "in_border_zone": p.in_border_zone,
        "border_zone_m": catalogue.border_zone_m,
        "sides": [
            {"code": s.code, "name": s.name, "contains": s.contains, "distance_m": _r(s.distance_m)}
            for s in f.sides
        ],
        "teams": [
            {
                "code": t.code,
                "name": t.name,
                "kind": t.kind,
                "side": t.side,
                "mechanisms": list(t.mechanisms),
                "base_distance_m": _r(t.base_distance_m),
            }
            for t in f.teams
            if t.covers
        ],
    }
