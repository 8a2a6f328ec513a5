"""Coverage audit of an administrator's boundary data: villages, grids, police grids, districts.

Five checks, each run on whole arrays with shapely 2 and STRtree queries. Cheap prepared tests
(``covers``, ``touches``) first set aside the features that are clearly fine, so the costly
overlays run only where something may be wrong:

- ``gap``: part of a village that no grid covers (管理盲区). Grids of any side count, because a
  joint grid run by both sides may cover the other side's village.
- ``overlap``: two grids of the same side share area. Grids of different sides may overlap;
  that is what a joint grid is.
- ``grid_outside_village``: part of a grid outside its own village. A joint grid may also
  reach into the territory of other sides, so that part is not counted.
- ``grid_split_police``: a grid lies in more than one police grid of its own side.
- ``police_crosses_side``: part of a police grid outside its own side's district(s).

Every input geometry is in a metric projected CRS: EPSG:4544 (CGCS2000 3-degree Gauss-Krüger,
central meridian 105°E), metres. Every area is in m², EPSG:4544. Any connected polygon smaller
than ``min_area_m2`` is treated as floating-point noise and dropped before a finding is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Transformer
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from gis.errors import InvalidGeometry, InvalidInput, UnknownSide

METRIC_EPSG = 4544
"""CGCS2000 / 3-degree Gauss-Krüger CM 105E: the metric CRS for Anju and Tongnan (metres)."""

FindingKind = Literal[
    "gap", "overlap", "grid_outside_village", "grid_split_police", "police_crosses_side"
]
KINDS: tuple[FindingKind, ...] = get_args(FindingKind)

SPLIT_MIN_SHARE = 0.01
"""A police grid counts for the split check only if it holds at least this share of the grid."""

Geoms = npt.NDArray[np.object_]
Codes = npt.NDArray[np.str_]
GeometryTransform = Callable[[Any], Any]
"""Maps a geometry, or an object array of geometries, to new coordinates (``shapely.transform``)."""

StrArrayLike = Sequence[str] | npt.NDArray[Any]
GeomArrayLike = Sequence[BaseGeometry | None] | npt.NDArray[Any]
BoolArrayLike = Sequence[bool] | npt.NDArray[Any]

_POLYGON = 3
_MULTIPOLYGON = 6
_MAX_LISTED = 20


def _codes(values: Any, what: str) -> Codes:
    arr = np.asarray(values, dtype=np.str_)
    if arr.ndim != 1:
        raise InvalidInput(f"{what} must be one-dimensional", {"shape": list(arr.shape)})
    return arr


def _geoms(values: Any) -> Geoms:
    seq = list(values) if not isinstance(values, np.ndarray) else values.ravel().tolist()
    arr = np.empty(len(seq), dtype=object)
    arr[:] = seq
    return arr


@dataclass(frozen=True, eq=False, init=False)
class Layer:
    """Parallel arrays of one boundary layer: feature codes, polygons (EPSG:4544, metres) and
    the side (district code) each feature belongs to. Sequences are accepted and stored as
    numpy arrays (codes and sides as ``str``, geometries as ``object``)."""

    codes: Codes
    geoms: Geoms
    sides: Codes

    def __init__(self, codes: StrArrayLike, geoms: GeomArrayLike, sides: StrArrayLike) -> None:
        object.__setattr__(self, "codes", _codes(codes, "codes"))
        object.__setattr__(self, "geoms", _geoms(geoms))
        object.__setattr__(self, "sides", _codes(sides, "sides"))
        n = len(self.codes)
        if len(self.geoms) != n or len(self.sides) != n:
            raise InvalidInput(
                f"{type(self).__name__}: codes, geoms and sides differ in length",
                {"codes": n, "geoms": len(self.geoms), "sides": len(self.sides)},
            )

    def __len__(self) -> int:
        return len(self.codes)


@dataclass(frozen=True, eq=False, init=False)
class VillageLayer(Layer):
    """Villages and communities (村/社区): the units every grid belongs to."""


@dataclass(frozen=True, eq=False, init=False)
class PoliceLayer(Layer):
    """Police grids (警格/警务区)."""


@dataclass(frozen=True, eq=False, init=False)
class DistrictLayer(Layer):
    """District polygons; ``sides`` is the side each belongs to (usually equal to ``codes``).
    A side may have several rows; they are unioned."""


@dataclass(frozen=True, eq=False, init=False)
class GridLayer(Layer):
    """Governance grids (网格): each belongs to one village; ``joint`` marks grids run by more
    than one side (联村), which may reach into other sides' territory (default: none)."""

    village_codes: Codes
    joint: npt.NDArray[np.bool_]

    def __init__(
        self,
        codes: StrArrayLike,
        geoms: GeomArrayLike,
        sides: StrArrayLike,
        village_codes: StrArrayLike,
        joint: BoolArrayLike | None = None,
    ) -> None:
        super().__init__(codes, geoms, sides)
        n = len(self.codes)
        villages = _codes(village_codes, "village_codes")
        flags = np.zeros(n, dtype=np.bool_) if joint is None else np.asarray(joint, dtype=np.bool_)
        if len(villages) != n or flags.shape != (n,):
            raise InvalidInput(
                "GridLayer: village_codes and joint must be parallel to codes",
                {"codes": n, "village_codes": len(villages), "joint": int(flags.size)},
            )
        object.__setattr__(self, "village_codes", villages)
        object.__setattr__(self, "joint", flags)


@dataclass(frozen=True)
class Finding:
    """One defect. ``area_m2`` is in m² and ``geometry`` is the offending part, both in the
    input CRS (EPSG:4544, metres).

    ``codes`` by kind: ``gap`` (village,); ``overlap`` (grid, grid); ``grid_outside_village``
    (grid,); ``grid_split_police`` (grid, police grids by share descending...);
    ``police_crosses_side`` (police grid,).
    """

    kind: FindingKind
    codes: tuple[str, ...]
    area_m2: float
    geometry: BaseGeometry
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class AuditReport:
    """All findings of one audit, ordered by kind, then codes, then larger area first."""

    findings: tuple[Finding, ...]

    def by_kind(self) -> dict[str, list[Finding]]:
        """Findings grouped by kind; every kind is present, possibly with an empty list."""
        out: dict[str, list[Finding]] = {k: [] for k in KINDS}
        for f in self.findings:
            out[f.kind].append(f)
        return out

    def summary(self) -> dict[str, dict[str, float]]:
        """Per kind: ``count`` and ``area_m2`` (total, m², EPSG:4544). Every kind is present."""
        return {
            k: {"count": len(fs), "area_m2": float(sum(f.area_m2 for f in fs))}
            for k, fs in self.by_kind().items()
        }

    @property
    def clean(self) -> bool:
        """True when the audit found nothing."""
        return not self.findings


# --- array helpers -----------------------------------------------------------------------


def _grouped_union(geoms: Geoms, groups: npt.NDArray[np.intp], n: int) -> Geoms:
    """Union of ``geoms`` per group id in ``0..n-1``, in one vectorised GEOS call.

    Members are laid out in an (n, widest group) table padded with None, which
    ``union_all(axis=1)`` skips; a group with no members yields an empty collection.
    """
    if n == 0:
        return np.empty(0, dtype=object)
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    counts = np.bincount(g, minlength=n)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(g)) - starts[g]
    table = np.full((n, max(int(counts.max(initial=0)), 1)), None, dtype=object)
    table[g, rank] = geoms[order]
    return np.asarray(shapely.union_all(table, axis=1), dtype=object)


def _polygon_parts(geoms: Geoms, min_area: float) -> tuple[Geoms, npt.NDArray[np.intp]]:
    """Connected polygons of ``geoms`` with area ≥ ``min_area`` (m²), and the row each came
    from. Lines and points left by overlays, and slivers, are dropped."""
    parts, owner = shapely.get_parts(geoms, return_index=True)
    keep = shapely.get_type_id(parts) == _POLYGON
    keep[keep] = shapely.area(parts[keep]) >= min_area
    return parts[keep], owner[keep]


def _polygonal(geoms: Geoms, min_area: float) -> Geoms:
    """``geoms`` reduced to their polygons of area ≥ ``min_area`` (m²); empty where none."""
    parts, owner = _polygon_parts(geoms, min_area)
    out = _grouped_union(parts, owner, len(geoms))
    out[shapely.is_empty(out)] = shapely.Polygon()
    return out


def _pairs(
    tree_geoms: Geoms, query_geoms: Geoms, predicate: str = "intersects"
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(query index, tree index) of every pair where ``predicate(query, tree)`` holds."""
    if len(tree_geoms) == 0 or len(query_geoms) == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty
    qi, ti = shapely.STRtree(tree_geoms).query(query_geoms, predicate=predicate)
    return qi.astype(np.intp), ti.astype(np.intp)


def _covered(inner: Geoms, outer: Geoms, owner: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
    """Whether each of ``inner`` lies wholly in ``outer[owner]``.

    A prepared ``covers`` test is several times cheaper than an overlay, and in clean data
    almost every feature passes it, so the overlays run only on the rest.
    """
    oi, ii = _pairs(inner, outer, "covers")
    out = np.zeros(len(inner), dtype=np.bool_)
    out[ii[owner[ii] == oi]] = True
    return out


def _index_of(keys: Codes, values: Codes) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """Position of each of ``values`` in ``keys`` (unique), and whether it was found."""
    if len(keys) == 0:
        return np.zeros(len(values), dtype=np.intp), np.zeros(len(values), dtype=np.bool_)
    order = np.argsort(keys)
    pos = np.clip(np.searchsorted(keys[order], values), 0, len(keys) - 1)
    idx = order[pos]
    return idx.astype(np.intp), keys[idx] == values


def _listed(codes: Codes) -> list[str]:
    return [str(c) for c in codes[:_MAX_LISTED]]


# --- validation --------------------------------------------------------------------------


def _validate(name: str, layer: Layer, side_names: Codes) -> npt.NDArray[np.intp]:
    """Check one layer; return each feature's index into ``side_names``."""
    uniq, counts = np.unique(layer.codes, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise InvalidInput(
            f"{name}: {len(dup)} duplicate codes", {"layer": name, "codes": _listed(dup)}
        )
    g = layer.geoms
    ok = shapely.is_geometry(g)
    ok[ok] = np.isin(shapely.get_type_id(g[ok]), (_POLYGON, _MULTIPOLYGON))
    ok[ok] = ~shapely.is_empty(g[ok]) & shapely.is_valid(g[ok])
    if not ok.all():
        bad = np.flatnonzero(~ok)
        raise InvalidGeometry(
            f"{name}: {len(bad)} features are not valid, non-empty (multi)polygons",
            {
                "layer": name,
                "count": len(bad),
                "codes": _listed(layer.codes[bad]),
                "reasons": [
                    str(shapely.is_valid_reason(x)) if shapely.is_geometry(x) else "missing"
                    for x in g[bad[:_MAX_LISTED]]
                ],
            },
        )
    idx, found = _index_of(side_names, layer.sides)
    if not found.all():
        raise UnknownSide(
            f"{name}: sides without a district polygon",
            {
                "layer": name,
                "sides": sorted({str(s) for s in layer.sides[~found]}),
                "known": [str(s) for s in side_names],
            },
        )
    return idx


# --- the five checks ---------------------------------------------------------------------


def _interior_pairs(grids: GridLayer) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Pairs ``a < b`` of grids whose interiors meet (any side)."""
    a, b = _pairs(grids.geoms, grids.geoms)
    keep = a < b
    a, b = a[keep], b[keep]
    # Most candidates are neighbours sharing an edge: a touch test is cheaper than an overlay.
    keep = ~shapely.touches(grids.geoms[a], grids.geoms[b])
    return a[keep], b[keep]


def _gaps(
    villages: VillageLayer,
    grids: GridLayer,
    village_idx: npt.NDArray[np.intp],
    in_village: npt.NDArray[np.bool_],
    pairs: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]],
    min_area: float,
) -> list[Finding]:
    n = len(villages)
    # When a village's own grids all lie inside it and no two of them overlap, the area they
    # leave bare is exactly area(V) - sum(area(G)). Below the threshold, no gap polygon can
    # reach it and the overlay is skipped; the relative margin absorbs rounding in the sums.
    v_area = shapely.area(villages.geoms)
    own_area = np.bincount(village_idx, weights=shapely.area(grids.geoms), minlength=n)
    suspect = v_area - own_area >= min_area - 1e-9 * v_area
    suspect[village_idx[~in_village]] = True
    a, b = pairs
    suspect[village_idx[a[village_idx[a] == village_idx[b]]]] = True
    todo = np.flatnonzero(suspect)

    # Subtract each village's own grids first, then test only the holes left against every
    # other grid (a neighbour reaching over, or another side's joint grid):
    # V - (own | other) == (V - own) - other.
    slot = np.full(n, -1, dtype=np.intp)
    slot[todo] = np.arange(len(todo))
    mine = slot[village_idx] >= 0
    own = _grouped_union(grids.geoms[mine], slot[village_idx[mine]], len(todo))
    holes = _polygonal(shapely.difference(villages.geoms[todo], own), min_area)
    open_ = np.flatnonzero(~shapely.is_empty(holes))
    hi, gi = _pairs(grids.geoms, holes[open_])
    foreign = village_idx[gi] != todo[open_[hi]]
    if foreign.any():
        other = _grouped_union(grids.geoms[gi[foreign]], hi[foreign], len(open_))
        holes[open_] = shapely.difference(holes[open_], other)
    parts, owner = _polygon_parts(holes, min_area)
    owner = todo[owner]
    areas = shapely.area(parts)
    return [
        Finding("gap", (str(villages.codes[o]),), float(a), p, {"side": str(villages.sides[o])})
        for p, o, a in zip(parts, owner, areas, strict=True)
    ]


def _overlaps(
    grids: GridLayer,
    pairs: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]],
    min_area: float,
) -> list[Finding]:
    a, b = pairs
    keep = grids.sides[a] == grids.sides[b]
    a, b = a[keep], b[keep]
    shapes = _polygonal(shapely.intersection(grids.geoms[a], grids.geoms[b]), min_area)
    areas = shapely.area(shapes)
    hit = np.flatnonzero(areas > 0)
    return [
        Finding(
            "overlap",
            tuple(sorted((str(grids.codes[a[i]]), str(grids.codes[b[i]])))),
            float(areas[i]),
            shapes[i],
            {"side": str(grids.sides[a[i]])},
        )
        for i in hit
    ]


def _others_territory(
    districts: DistrictLayer, district_side: npt.NDArray[np.intp], n_sides: int
) -> Geoms:
    """For each side, the union of every other side's districts."""
    out = np.empty(n_sides, dtype=object)
    # One union per side: the number of sides is a handful, not a feature count.
    for s in range(n_sides):
        out[s] = shapely.union_all(districts.geoms[district_side != s])
    return out


def _outside_village(
    grids: GridLayer,
    villages: VillageLayer,
    village_idx: npt.NDArray[np.intp],
    in_village: npt.NDArray[np.bool_],
    others: Geoms,
    grid_side: npt.NDArray[np.intp],
    min_area: float,
) -> list[Finding]:
    todo = np.flatnonzero(~in_village)
    outside = shapely.difference(grids.geoms[todo], villages.geoms[village_idx[todo]])
    joint = grids.joint[todo]
    outside[joint] = shapely.difference(outside[joint], others[grid_side[todo[joint]]])
    shapes = _polygonal(outside, min_area)
    areas = shapely.area(shapes)
    return [
        Finding(
            "grid_outside_village",
            (str(grids.codes[i]),),
            float(areas[k]),
            shapes[k],
            {
                "village": str(grids.village_codes[i]),
                "side": str(grids.sides[i]),
                "joint": bool(grids.joint[i]),
            },
        )
        for k, i in enumerate(todo)
        if areas[k] > 0
    ]


def _split_police(
    grids: GridLayer,
    police: PoliceLayer,
    grid_side: npt.NDArray[np.intp],
    police_side: npt.NDArray[np.intp],
    min_area: float,
) -> list[Finding]:
    # A grid wholly inside one police grid of its side cannot be split; overlay only the rest.
    pi, gi = _pairs(grids.geoms, police.geoms, "covers")
    whole = np.zeros(len(grids), dtype=np.bool_)
    whole[gi[police_side[pi] == grid_side[gi]]] = True
    todo = np.flatnonzero(~whole)
    ti, pi = _pairs(police.geoms, grids.geoms[todo])
    gi = todo[ti]
    own = grid_side[gi] == police_side[pi]
    gi, pi = gi[own], pi[own]
    grid_area = shapely.area(grids.geoms)
    shared = shapely.area(shapely.intersection(grids.geoms[gi], police.geoms[pi]))
    real = shared >= np.maximum(min_area, SPLIT_MIN_SHARE * grid_area[gi])
    gi, pi, shared = gi[real], pi[real], shared[real]
    split = np.bincount(gi, minlength=len(grids)) > 1
    sel = split[gi]
    gi, pi, shared = gi[sel], pi[sel], shared[sel]
    if len(gi) == 0:
        return []
    # Sort by grid, then largest share first: the first row of each grid is its main police grid.
    order = np.lexsort((-shared, gi))
    gi, pi, shared = gi[order], pi[order], shared[order]
    first = np.flatnonzero(np.r_[True, gi[1:] != gi[:-1]])
    bounds = np.r_[first, len(gi)]
    main_grid, main_police = gi[first], pi[first]
    rest = _polygonal(
        shapely.difference(grids.geoms[main_grid], police.geoms[main_police]), min_area
    )
    rest_area = shapely.area(rest)
    findings = []
    for k, g in enumerate(main_grid):
        lo, hi = bounds[k], bounds[k + 1]
        pcodes = [str(c) for c in police.codes[pi[lo:hi]]]
        shares = {
            c: round(float(s / grid_area[g]), 4) for c, s in zip(pcodes, shared[lo:hi], strict=True)
        }
        findings.append(
            Finding(
                "grid_split_police",
                (str(grids.codes[g]), *pcodes),
                float(rest_area[k]),
                rest[k],
                {"shares": shares, "side": str(grids.sides[g])},
            )
        )
    return findings


def _police_crossing(
    police: PoliceLayer,
    police_side: npt.NDArray[np.intp],
    districts: DistrictLayer,
    territory: Geoms,
    min_area: float,
) -> list[Finding]:
    todo = np.flatnonzero(~_covered(police.geoms, territory, police_side))
    shapes = _polygonal(
        shapely.difference(police.geoms[todo], territory[police_side[todo]]), min_area
    )
    areas = shapely.area(shapes)
    keep = areas > 0
    shapes, areas, hit = shapes[keep], areas[keep], todo[keep]
    qi, di = _pairs(districts.geoms, shapes)
    entered = shapely.area(shapely.intersection(shapes[qi], districts.geoms[di])) >= min_area
    qi, di = qi[entered], di[entered]
    findings = []
    for k, i in enumerate(hit):
        own = str(police.sides[i])
        others = sorted({str(s) for s in districts.sides[di[qi == k]]} - {own})
        findings.append(
            Finding(
                "police_crosses_side",
                (str(police.codes[i]),),
                float(areas[k]),
                shapes[k],
                {"side": own, "sides": others},
            )
        )
    return findings


def audit_coverage(
    *,
    villages: VillageLayer,
    grids: GridLayer,
    police_grids: PoliceLayer,
    districts: DistrictLayer,
    min_area_m2: float = 1.0,
) -> AuditReport:
    """Audit boundary data for gaps, same-side grid overlaps, grids outside their village,
    grids split across police grids and police grids crossing the side line.

    All geometries are polygons in EPSG:4544 (metres); areas are m², EPSG:4544. Connected
    polygons smaller than ``min_area_m2`` are noise and ignored.

    Raises ``InvalidInput`` (bad threshold, ragged arrays, duplicate codes, a grid naming an
    unknown village), ``InvalidGeometry`` (missing, empty, invalid or non-polygonal features)
    and ``UnknownSide`` (a feature whose side has no district polygon).
    """
    if not np.isfinite(min_area_m2) or min_area_m2 <= 0:
        raise InvalidInput(
            "min_area_m2 must be a positive number of m²", {"min_area_m2": min_area_m2}
        )
    side_names = np.unique(districts.sides)
    district_side = _validate("districts", districts, side_names)
    _validate("villages", villages, side_names)
    grid_side = _validate("grids", grids, side_names)
    police_side = _validate("police_grids", police_grids, side_names)
    village_idx, found = _index_of(villages.codes, grids.village_codes)
    if not found.all():
        raise InvalidInput(
            "grids: village codes not among the villages",
            {
                "layer": "grids",
                "codes": _listed(grids.codes[~found]),
                "villages": sorted({str(v) for v in grids.village_codes[~found]})[:_MAX_LISTED],
            },
        )

    territory = _grouped_union(districts.geoms, district_side, len(side_names))
    others = _others_territory(districts, district_side, len(side_names))
    in_village = _covered(grids.geoms, villages.geoms, village_idx)
    pairs = _interior_pairs(grids)
    findings = [
        *_gaps(villages, grids, village_idx, in_village, pairs, min_area_m2),
        *_overlaps(grids, pairs, min_area_m2),
        *_outside_village(grids, villages, village_idx, in_village, others, grid_side, min_area_m2),
        *_split_police(grids, police_grids, grid_side, police_side, min_area_m2),
        *_police_crossing(police_grids, police_side, districts, territory, min_area_m2),
    ]
    rank = {k: i for i, k in enumerate(KINDS)}
    findings.sort(key=lambda f: (rank[f.kind], f.codes, -f.area_m2))
    return AuditReport(tuple(findings))


# --- output ------------------------------------------------------------------------------


def metric_transformer() -> tuple[GeometryTransform, GeometryTransform]:
    """Return ``(to_metric, to_wgs84)``: functions projecting a geometry, or an object array
    of geometries, from WGS84 degrees (EPSG:4326; CGCS2000 is the same at this scale) to
    EPSG:4544 metres, and back. Axis order is always (x, y) = (lon, lat) / (easting, northing).
    """
    forward = Transformer.from_crs("EPSG:4326", f"EPSG:{METRIC_EPSG}", always_xy=True)
    inverse = Transformer.from_crs(f"EPSG:{METRIC_EPSG}", "EPSG:4326", always_xy=True)

    def to_metric(geoms: Any) -> Any:
        return shapely.transform(geoms, forward.transform, interleaved=False)

    def to_wgs84(geoms: Any) -> Any:
        return shapely.transform(geoms, inverse.transform, interleaved=False)

    return to_metric, to_wgs84


def to_feature_collection(
    report: AuditReport, to_wgs84: GeometryTransform | None = None
) -> dict[str, Any]:
    """The report as a GeoJSON FeatureCollection dict.

    ``to_wgs84`` is applied once to the object array of all finding geometries (for example
    the second function of ``metric_transformer()``); without it, coordinates stay in
    EPSG:4544 metres. Properties: ``kind``, ``codes``, ``area_m2`` (m², EPSG:4544, rounded to
    0.1) and ``detail``.
    """
    geoms = _geoms([f.geometry for f in report.findings])
    if to_wgs84 is not None and len(geoms):
        geoms = _geoms(to_wgs84(geoms))
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": mapping(g),
                "properties": {
                    "kind": f.kind,
                    "codes": list(f.codes),
                    "area_m2": round(f.area_m2, 1),
                    "detail": dict(f.detail),
                },
            }
            for f, g in zip(report.findings, geoms, strict=True)
        ],
    }
