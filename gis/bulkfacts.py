"""Location facts for many points at once: the set-based twin of ``location_facts()``.

Pure and vectorised (shapely STRtree queries over whole arrays of points). It answers the same
questions as the SQL function in migration 0006, with the same rules for which sides, grids,
police grids, teams and chiefs are reported, and builds ``gis.facts.LocationFacts`` so the
same ``gis.routing.decide`` runs on them:

- point-in-polygon tests run on the WGS84 geometry, exactly as PostGIS does;
- metric distances are measured in EPSG:4544 (CGCS2000 / 3-degree GK CM 105E) and divided by
  the projection's scale factor at the point, which matches PostGIS's ellipsoidal distances to
  well under a decimetre within a few kilometres (distances between points use the geodesic);
- "the k nearest" candidates are taken in planar degrees, as the SQL's KNN index does.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyproj
import shapely

from gis.facts import (
    AreaRef,
    ChiefRef,
    GridRef,
    LocationFacts,
    PoliceGridRef,
    SideFact,
    TeamCandidate,
)

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Geoms = npt.NDArray[np.object_]

METRIC_EPSG = 4544
_TO_METRIC = pyproj.Transformer.from_crs(4326, METRIC_EPSG, always_xy=True)
_PROJ = pyproj.Proj(METRIC_EPSG)
_GEOD = pyproj.Geod(ellps="WGS84")


def to_metric(geoms: Any) -> Geoms:
    """WGS84 geometries in EPSG:4544 metres."""

    def fn(xy: Floats) -> Floats:
        x, y = _TO_METRIC.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(np.asarray(geoms, dtype=object), fn)


def scale_factor(lon: Floats, lat: Floats) -> Floats:
    """The EPSG:4544 point scale factor (conformal, so the same in every direction)."""
    return np.asarray(_PROJ.get_factors(lon, lat).meridional_scale, dtype=np.float64)


@dataclass
class Layer:
    """A reference layer: WGS84 geometries, their metric twins, and attribute columns."""

    geoms: Geoms
    cols: dict[str, list[Any]]
    metric: Geoms = field(init=False)
    tree: shapely.STRtree = field(init=False)
    mtree: shapely.STRtree = field(init=False)

    def __post_init__(self) -> None:
        self.geoms = np.asarray(self.geoms, dtype=object)
        self.metric = to_metric(self.geoms)
        self.tree = shapely.STRtree(self.geoms)
        self.mtree = shapely.STRtree(self.metric)

    def __len__(self) -> int:
        return len(self.geoms)


@dataclass
class Reference:
    """Everything the facts are drawn from (see ``layers.bulk.reference``)."""

    side_parts: Layer  # cols: side
    districts: dict[str, str]  # code -> name
    areas: dict[str, tuple[str, str, str | None]]  # code -> (name, level, parent)
    villages: Layer  # cols: code
    grids: Layer  # cols: code, name, side, village_code, joint, chief_name, chief_phone, spans
    police: Layer  # cols: code, name, side, station, officer_name, officer_phone
    teams: list[dict[str, Any]]  # code, name, kind, side, sides, mechanisms, roster, patrol, base
    chiefs: Layer  # cols: code, role, side, name, phone, feature_name
    _by_side: dict[str, dict[str, Any]] = field(default_factory=dict)
    _teams: dict[str, Any] = field(default_factory=dict)

    def side_index(self, layer_name: str, side: str) -> tuple[Ints, shapely.STRtree | None]:
        """Indices of ``layer_name`` features of ``side``, and a metric tree over them."""
        key = f"{layer_name}:{side}"
        if key not in self._by_side:
            layer: Layer = getattr(self, layer_name)
            if f"{layer_name}:" not in self._by_side:  # group every side's features at once
                sides = np.asarray(layer.cols["side"], dtype=object)
                order = np.argsort(sides, kind="stable")
                bounds = np.flatnonzero(sides[order][1:] != sides[order][:-1]) + 1
                self._by_side[f"{layer_name}:"] = {
                    str(sides[c[0]]): c for c in np.split(order, bounds) if len(c)
                }
            idx = np.sort(self._by_side[f"{layer_name}:"].get(side, np.zeros(0, dtype=np.int64)))
            self._by_side[key] = {
                "idx": idx,
                "tree": shapely.STRtree(layer.metric[idx]) if len(idx) else None,
            }
        hit = self._by_side[key]
        return hit["idx"], hit["tree"]

    def team_arrays(self) -> dict[str, Any]:
        if not self._teams and self.teams:
            patrol = np.array([t["patrol"] for t in self.teams], dtype=object)
            base = np.array([t["base"] for t in self.teams], dtype=object)
            self._teams = {
                "patrol_tree": shapely.STRtree(patrol),
                "base_xy": shapely.get_coordinates(base),
                "mechanisms": [frozenset(t["mechanisms"]) for t in self.teams],
            }
        return self._teams


@dataclass
class Points:
    """The points to gather facts for (WGS84) and what each asks about."""

    lon: Floats
    lat: Floats
    mechanism: list[str | None]
    extent: list[Any] | None = None  # shapely geometry or None per point
    sides: list[tuple[str, ...]] | None = None  # sides to report however far (parties)

    def __len__(self) -> int:
        return len(self.lon)


class _Csr:
    """Pairs (point, value[, number]) grouped by point, for quick per-point look-ups."""

    def __init__(self, p: Ints, v: Ints, d: Floats | None, n: int) -> None:
        order = np.argsort(p, kind="stable")
        self.v = v[order]
        self.d = None if d is None else d[order]
        self.starts = np.searchsorted(p[order], np.arange(n + 1))

    def keys(self, i: int) -> list[int]:
        return self.v[self.starts[i] : self.starts[i + 1]].tolist()

    def items(self, i: int) -> list[tuple[int, float]]:
        a, b = self.starts[i], self.starts[i + 1]
        assert self.d is not None
        return list(zip(self.v[a:b].tolist(), self.d[a:b].tolist(), strict=True))


def _member(x: Ints, sorted_keys: Ints) -> npt.NDArray[np.bool_]:
    """``np.isin(x, sorted_keys)`` for sorted, unique ``sorted_keys`` (a binary search, no sort)."""
    if not len(sorted_keys):
        return np.zeros(len(x), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, x), len(sorted_keys) - 1)
    return np.asarray(sorted_keys[pos] == x)


def _code(r: Any) -> str:
    return str(r.code)


class BulkFacts:
    """Facts for many points, computed set-wise; ``facts(i)`` builds one ``LocationFacts``."""

    def __init__(
        self,
        ref: Reference,
        pts: Points,
        *,
        radius_m: float,
        teams_for: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """``teams_for`` limits the (costly) team candidates to some points; by default to those
        that may turn out cross-boundary (``may_cross``): the decision reads teams only then."""
        self.ref, self.pts, self.radius_m = ref, pts, radius_m
        n = len(pts)
        self.n = n
        lon, lat = np.asarray(pts.lon, dtype=np.float64), np.asarray(pts.lat, dtype=np.float64)
        self.geom = shapely.points(lon, lat)
        mx, my = _TO_METRIC.transform(lon, lat)
        self.mgeom = shapely.points(mx, my)
        self.k = scale_factor(lon, lat)
        self._slot_arrays: tuple[npt.NDArray[np.bool_], Ints, Ints, Ints] | None = None
        self._here_refs: dict[tuple[str, int], Any] = {}
        self._sides()
        self._chain()
        self._grids_and_police()
        self._teams(teams_for if teams_for is not None else self.may_cross())
        self._chiefs()
        self._extents()
        self._prefetch_nearest()

    # -- sides ----------------------------------------------------------------------------

    def _sides(self) -> None:
        ref, n = self.ref, self.n
        parts = ref.side_parts
        part_side = np.asarray(parts.cols["side"], dtype=object)
        codes = sorted(set(part_side.tolist()))
        code_id = {c: i for i, c in enumerate(codes)}
        part_sid = np.array([code_id[s] for s in part_side.tolist()], dtype=np.int64)
        self._part_sid = part_sid
        ns = max(1, len(codes))
        self.side_codes = codes
        self.side_id = code_id
        # containing: on the WGS84 pieces, as ST_Intersects does
        pi, qi = parts.tree.query(self.geom, predicate="intersects")
        ckey = np.unique(pi * ns + part_sid[qi])
        self.contains = _Csr(ckey // ns, ckey % ns, None, n)
        kmax = float(self.k.max()) if n else 1.0
        # within the radius (metric, scale-corrected); a margin, then the exact test
        margin = 1.01 * self.radius_m * kmax
        pi, qi = parts.mtree.query(self.mgeom, predicate="dwithin", distance=margin)
        d = shapely.distance(self.mgeom[pi], parts.metric[qi]) / self.k[pi]
        key = pi * ns + part_sid[qi]
        ukey, inv = np.unique(key, return_inverse=True)
        dmin = np.full(len(ukey), np.inf)
        np.minimum.at(dmin, inv, d)
        self.near = _Csr(ukey // ns, ukey % ns, dmin, n)
        # nearest side not containing the point: within the margin, else widen the search
        other_s = np.full(n, -1, dtype=np.int64)
        other_d = np.full(n, np.inf)

        def settle(p: Ints, sid: Ints, dist: Floats, limit: float | None) -> None:
            if limit is not None:  # else: no containing side among them, all within reach
                keep = ~_member(p * ns + sid, ckey) & (dist <= limit)
                p, sid, dist = p[keep], sid[keep], dist[keep]
            order = np.lexsort((sid, dist, p))  # per point: nearest, then lowest code
            p, sid, dist = p[order], sid[order], dist[order]
            first = np.unique(p, return_index=True)[1]
            other_s[p[first]] = sid[first]
            other_d[p[first]] = dist[first]

        settle(ukey // ns, ukey % ns, dmin, np.inf)
        self.other_s, self.other_d = other_s, other_d
        # the others' nearest other side lies beyond the margin: looked up when asked for
        # (``resolve_others``), since only a full decision reads it
        self._pending = other_s < 0 if len(codes) > 1 else np.zeros(n, dtype=bool)
        self._settle = settle
        self._other_trees: dict[tuple[int, ...], tuple[Ints, shapely.STRtree] | None] = {}

    def resolve_others(self, idx: Ints | None = None) -> None:
        """Find the nearest other side of points ``idx`` (default: all) whose nearest other
        side lies beyond the margin: the nearest piece of a side not containing the point,
        from a tree over those pieces, one per set of containing sides (in practice one per
        side). Ties: the lowest code, as everywhere."""
        todo = np.flatnonzero(self._pending) if idx is None else idx[self._pending[idx]]
        if not len(todo):
            return
        parts = self.ref.side_parts
        part_sid = self._part_sid
        ncont = np.diff(self.contains.starts)[todo]
        groups: dict[tuple[int, ...], Ints] = {}
        one = todo[ncont == 1]
        one_side = self.contains.v[self.contains.starts[one]]
        order = np.argsort(one_side, kind="stable")
        for chunk in np.split(order, np.flatnonzero(np.diff(one_side[order])) + 1):
            if len(chunk):
                groups[(int(one_side[chunk[0]]),)] = one[chunk]
        rest: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i in todo[ncont != 1].tolist():
            rest[tuple(self.contains.keys(i))].append(i)
        groups.update({k: np.array(v, dtype=np.int64) for k, v in rest.items()})
        for inside, pts in groups.items():
            if inside not in self._other_trees:
                others = np.flatnonzero(~np.isin(part_sid, inside))
                self._other_trees[inside] = (
                    (others, shapely.STRtree(parts.metric[others])) if len(others) else None
                )
            hit = self._other_trees[inside]
            if hit is None:
                continue
            others, tree = hit
            qi, ti = tree.query_nearest(self.mgeom[pts], all_matches=True)
            p, q = pts[qi], others[ti]
            dist = shapely.distance(self.mgeom[p], parts.metric[q]) / self.k[p]
            self._settle(p, part_sid[q], dist, None)
        self._pending[todo] = False

    def side_list(self, i: int) -> list[SideFact]:
        """The sides reported for point ``i`` (containing, within the radius, nearest other,
        requested), with their distances in metres; sorted by code."""
        codes = self.side_codes
        have: dict[int, float] = {}
        if self._pending[i]:
            self.resolve_others(np.array([i], dtype=np.int64))
        inside = self.contains.keys(i)
        for s in inside:
            have[s] = 0.0
        for s, dd in self.near.items(i):
            if s not in have and dd <= self.radius_m:
                have[s] = dd
        if self.other_s[i] >= 0:
            have.setdefault(int(self.other_s[i]), float(self.other_d[i]))
        if self.pts.sides is not None:
            for code in self.pts.sides[i]:
                s2 = self.side_id.get(code)
                if s2 is not None and s2 not in have:
                    have[s2] = self._distance_to_side(i, s2)
        out = [
            SideFact(codes[s], self.ref.districts.get(codes[s], codes[s]), s in inside, dd)
            for s, dd in have.items()
            if codes[s] in self.ref.districts
        ]
        return sorted(out, key=lambda f: f.code)

    def _distance_to_side(self, i: int, s: int) -> float:
        for s2, dd in self.near.items(i):
            if s2 == s:
                return dd
        idx, tree = self.ref.side_index("side_parts", self.side_codes[s])
        if tree is None:
            return float("inf")
        j = tree.nearest(self.mgeom[i])
        return float(
            shapely.distance(self.mgeom[i], self.ref.side_parts.metric[idx[j]]) / self.k[i]
        )

    def may_cross(self) -> npt.NDArray[np.bool_]:
        """Points that could be cross-boundary: not inside exactly one side, another side within
        the radius, an extent, parties, or a joint grid. A superset: the rest never are."""
        n = self.n
        inside = np.diff(self.contains.starts)
        near = self.near
        counts = np.diff(near.starts)
        assert near.d is not None
        p_of = np.repeat(np.arange(n), counts)
        close = near.d <= self.radius_m * 1.001  # the containing side is among them at 0 m
        multi = np.bincount(p_of[close], minlength=n) > 1
        out = (inside != 1) | multi | self.in_joint
        if self.pts.extent is not None:
            out |= np.array([e is not None for e in self.pts.extent], dtype=bool)
        if self.pts.sides is not None:
            out |= np.array([bool(s) for s in self.pts.sides], dtype=bool)
        return out

    def simple(self) -> npt.NDArray[np.bool_]:
        """Points whose facts have the plain shape: inside exactly one side, no other side in
        the radius (so never cross-boundary), exactly one grid and one police grid here, both
        of that side, and no chief within the radius. Their decisions differ only in which
        grid and police grid they name (``slots``)."""
        return self.slot_arrays()[0]

    def slot_arrays(self) -> tuple[npt.NDArray[np.bool_], Ints, Ints, Ints]:
        """``simple()``, and per point the side index, grid index and police grid index of
        ``slots`` (-1 where a point has not exactly one of them)."""
        if self._slot_arrays is not None:
            return self._slot_arrays
        n = self.n
        one_side = np.diff(self.contains.starts) == 1
        side_of = np.full(n, -1, dtype=np.int64)
        side_of[one_side] = self.contains.v[self.contains.starts[:-1][one_side]]
        ok = one_side & ~self.may_cross()
        firsts = []
        for layer_name, here in (("grids", self.grids_here), ("police", self.police_here)):
            layer: Layer = getattr(self.ref, layer_name)
            if "_sid" not in layer.cols:
                layer.cols["_sid"] = np.array(  # type: ignore[assignment]
                    [self.side_id.get(x, -1) for x in layer.cols["side"]], dtype=np.int64
                )
            single = np.diff(here.starts) == 1
            first = np.full(n, -1, dtype=np.int64)
            first[single] = here.v[here.starts[:-1][single]]
            sid = np.asarray(layer.cols["_sid"])
            ok &= single & (np.where(first >= 0, sid[np.maximum(first, 0)], -2) == side_of)
            firsts.append(first)
        if self.chiefs_near:
            ok[np.fromiter(self.chiefs_near.keys(), dtype=np.int64)] = False
        self._slot_arrays = (ok, side_of, firsts[0], firsts[1])
        return self._slot_arrays

    def slots(self, i: int) -> tuple[str, int, int]:
        """For a ``simple`` point: its side code, grid index and police grid index."""
        return (
            self.side_codes[self.contains.keys(i)[0]],
            self.grids_here.keys(i)[0],
            self.police_here.keys(i)[0],
        )

    # -- area chain -------------------------------------------------------------------------

    def _chain(self) -> None:
        """Only a full decision reads a point's village: looked up when asked for
        (``resolve``), for many points at once."""
        self.village = np.full(self.n, -1, dtype=np.int64)
        self._village_pending = np.ones(self.n, dtype=bool)

    def _villages(self, idx: Ints) -> None:
        """The village containing each point of ``idx`` (the lowest code when several do)."""
        idx = idx[self._village_pending[idx]]
        if not len(idx):
            return
        v = self.ref.villages
        pi, qi = v.tree.query(self.geom[idx], predicate="intersects")
        codes = np.asarray(v.cols["code"], dtype=object)
        rank = np.empty(len(codes), dtype=np.int64)
        rank[np.argsort(codes, kind="stable")] = np.arange(len(codes))
        order = np.lexsort((rank[qi], pi))
        first = np.unique(pi[order], return_index=True)[1]
        self.village[idx[pi[order][first]]] = qi[order][first]
        self._village_pending[idx] = False

    def resolve(self, idx: Ints | None = None) -> None:
        """Look up, for points ``idx`` (default: all), what only a full decision reads: the
        village, and a nearest other side beyond the margin. ``facts(i)`` does it for one
        point when needed; for many, this is one set-wise pass."""
        idx = np.arange(self.n, dtype=np.int64) if idx is None else np.asarray(idx, np.int64)
        self._villages(idx)
        self.resolve_others(idx)

    def chain(self, i: int) -> tuple[AreaRef, ...]:
        if self._village_pending[i]:
            self._villages(np.array([i], dtype=np.int64))
        vi = int(self.village[i])
        if vi < 0:
            return ()
        vc = self.ref.villages.cols["code"][vi]
        out = []
        areas = self.ref.areas
        d = areas.get(vc[:6])
        if d is not None:
            out.append(AreaRef(vc[:6], d[0], d[1]))
        parent = areas[vc][2]
        if parent is not None and parent in areas:
            out.append(AreaRef(parent, areas[parent][0], areas[parent][1]))
        out.append(AreaRef(vc, areas[vc][0], "village"))
        return tuple(out)

    # -- grids and police grids ---------------------------------------------------------------

    def _grids_and_police(self) -> None:
        g, pg = self.ref.grids, self.ref.police
        pi, qi = g.tree.query(self.geom, predicate="intersects")
        self.grids_here = _Csr(pi, qi, None, self.n)
        joint = np.asarray(g.cols["joint"], dtype=bool)
        self.in_joint = np.zeros(self.n, dtype=bool)
        self.in_joint[pi[joint[qi]]] = True
        pi, qi = pg.tree.query(self.geom, predicate="intersects")
        self.police_here = _Csr(pi, qi, None, self.n)
        self._nearest: dict[tuple[str, int, str], tuple[int, float] | None] = {}

    def _prefetch_nearest(self) -> None:
        """Nearest grid and police grid of every reported side not containing the point, for
        all points at once: one ``query_nearest`` per side over that side's features."""
        n, ns = self.n, max(1, len(self.side_codes))
        near = self.near
        assert near.d is not None
        p_of = np.repeat(np.arange(n), np.diff(near.starts))
        keys = p_of * ns + near.v
        ckeys = np.repeat(np.arange(n), np.diff(self.contains.starts)) * ns + self.contains.v
        keep = (near.d <= self.radius_m) & ~_member(keys, ckeys)
        has_other = (self.other_s >= 0) & (self.other_d <= self.radius_m)
        keys = np.concatenate(
            [keys[keep], np.flatnonzero(has_other) * ns + self.other_s[has_other]]
        )
        keys = np.unique(keys)
        self._pre: dict[str, dict[int, tuple[int, float]]] = {}
        for layer_name in ("grids", "police"):
            layer: Layer = getattr(self.ref, layer_name)
            codes = layer.cols["code"]
            out_j = np.full(len(keys), -1, dtype=np.int64)
            out_d = np.full(len(keys), np.inf)
            sides = keys % ns
            for s in np.unique(sides).tolist():
                sel = np.flatnonzero(sides == s)
                idx, tree = self.ref.side_index(layer_name, self.side_codes[s])
                if tree is None:
                    continue
                p = keys[sel] // ns
                (qi, ti), dist = tree.query_nearest(
                    self.mgeom[p], all_matches=True, return_distance=True
                )
                # ties (equal distance): lowest code first, as the SQL orders them
                cand_codes = np.array([codes[j] for j in idx[ti].tolist()], dtype=object)
                order = np.lexsort((cand_codes, qi))
                first = np.unique(qi[order], return_index=True)[1]
                pick = order[first]
                out_j[sel[qi[pick]]] = idx[ti[pick]]
                out_d[sel[qi[pick]]] = dist[pick] / self.k[p[qi[pick]]]
            found = out_j >= 0
            self._pre[layer_name] = dict(
                zip(
                    keys[found].tolist(),
                    zip(out_j[found].tolist(), out_d[found].tolist(), strict=True),
                    strict=True,
                )
            )

    def _nearest_of(self, layer_name: str, i: int, side: str) -> tuple[int, float] | None:
        """Nearest feature of ``side`` (a containing one at 0 m, lowest code first)."""
        key = (layer_name, i, side)
        if key in self._nearest:
            return self._nearest[key]
        pre = getattr(self, "_pre", {}).get(layer_name)
        sid = self.side_id.get(side)
        if pre is not None and sid is not None:
            got = pre.get(i * max(1, len(self.side_codes)) + sid)
            if got is not None:
                return got
        layer: Layer = getattr(self.ref, layer_name)
        here = self.grids_here if layer_name == "grids" else self.police_here
        codes = layer.cols["code"]
        mine = [j for j in here.keys(i) if layer.cols["side"][j] == side]
        if mine:
            j = min(mine, key=lambda j: codes[j])
            out: tuple[int, float] | None = (j, 0.0)
        else:
            idx, tree = self.ref.side_index(layer_name, side)
            if tree is None:
                out = None
            else:
                # nearest in metres, then any within 1 m of it, lowest code first (ties)
                j = int(tree.nearest(self.mgeom[i]))
                d0 = float(shapely.distance(self.mgeom[i], layer.metric[idx[j]]))
                cand = tree.query(self.mgeom[i], predicate="dwithin", distance=d0 + 1.0)
                ds = shapely.distance(self.mgeom[i], layer.metric[idx[cand]]) / self.k[i]
                order = sorted(
                    zip(
                        ds.tolist(),
                        [codes[idx[c]] for c in cand.tolist()],
                        cand.tolist(),
                        strict=True,
                    )
                )
                out = (int(idx[order[0][2]]), float(order[0][0]))
        self._nearest[key] = out
        return out

    def _here_ref(self, layer_name: str, j: int) -> Any:
        """The (immutable) reference to a grid or police grid containing a point: the same
        for every point inside it, so built once."""
        key = (layer_name, j)
        ref = self._here_refs.get(key)
        if ref is None:
            ref = self._here_refs[key] = (
                self._grid_ref(j, True, 0.0)
                if layer_name == "grids"
                else self._police_ref(j, True, 0.0)
            )
        return ref

    def _grid_ref(self, j: int, contains: bool, distance: float) -> GridRef:
        c = self.ref.grids.cols
        spans = c["spans"][j] if c["joint"][j] else [c["side"][j]]
        return GridRef(
            c["code"][j], c["name"][j], c["side"][j], c["village_code"][j], bool(c["joint"][j]),
            c["chief_name"][j], c["chief_phone"][j], contains, distance,
            tuple(spans) if contains else (c["side"][j],),
        )  # fmt: skip

    def _police_ref(self, j: int, contains: bool, distance: float) -> PoliceGridRef:
        c = self.ref.police.cols
        return PoliceGridRef(
            c["code"][j], c["name"][j], c["side"][j], c["station"][j], c["officer_name"][j],
            c["officer_phone"][j], contains, distance,
        )  # fmt: skip

    # -- teams ------------------------------------------------------------------------------------

    def _teams(self, wanted: npt.NDArray[np.bool_]) -> None:
        """Team candidates of the ``wanted`` points, as pairs (point, team, covers, metres)
        grouped by point: the ten nearest bases (planar degrees, as the SQL's KNN) of teams
        serving the point's mechanism, and every serving team whose patrol area covers it."""
        n = self.n
        empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        self.team_cands = _Csr(empty_i, empty_i, empty_f, n)
        self._team_fields = [
            (x["code"], x["name"], x["kind"], x["side"], tuple(x["sides"]),
             tuple(x["mechanisms"]), x["roster"])
            for x in self.ref.teams
        ]  # fmt: skip
        self._team_cov = np.zeros(0, dtype=bool)
        ref = self.ref
        if not ref.teams:
            return
        ta = ref.team_arrays()
        idx = np.flatnonzero(wanted)
        if not len(idx):
            return
        nt = len(ref.teams)
        pi, ti = ta["patrol_tree"].query(self.geom[idx], predicate="intersects")
        cov_p, cov_t = idx[pi], ti
        mech = self.pts.mechanism
        by_mech: dict[str | None, list[int]] = defaultdict(list)
        for i in idx.tolist():
            by_mech[mech[i]].append(i)
        base_xy = ta["base_xy"]
        lon, lat = np.asarray(self.pts.lon), np.asarray(self.pts.lat)
        in_group = np.zeros(n, dtype=bool)
        keys: list[Ints] = []
        cov_keys: list[Ints] = []
        for m, members in by_mech.items():
            serves = np.array([m is None or m in ms for ms in ta["mechanisms"]], dtype=bool)
            serving = np.flatnonzero(serves)
            if not len(serving):
                continue
            mem = np.array(members, dtype=np.int64)
            in_group[:] = False
            in_group[mem] = True
            sel = in_group[cov_p] & serves[cov_t]
            cov_keys.append(cov_p[sel] * nt + cov_t[sel])
            kk = min(10, len(serving))
            for start in range(0, len(mem), 20_000):
                chunk = mem[start : start + 20_000]
                dx = lon[chunk, None] - base_xy[serving, 0][None, :]
                dy = lat[chunk, None] - base_xy[serving, 1][None, :]
                d2 = dx * dx + dy * dy
                if kk < len(serving):
                    part = np.argpartition(d2, kk - 1, axis=1)[:, :kk]
                else:
                    part = np.tile(np.arange(len(serving)), (len(chunk), 1))
                keys.append(np.repeat(chunk, kk) * nt + serving[part].ravel())
        if not keys:
            return
        ck = np.unique(np.concatenate(cov_keys)) if cov_keys else np.zeros(0, dtype=np.int64)
        key = np.unique(np.concatenate([*keys, ck]))  # by point, then team index
        p, t = key // nt, key % nt
        _, _, dist = _GEOD.inv(lon[p], lat[p], base_xy[t, 0], base_xy[t, 1])
        self.team_cands = _Csr(p, t, np.asarray(dist, dtype=np.float64), n)
        self._team_cov = np.isin(key, ck)

    def team_items(self, i: int) -> list[tuple[int, bool, float]]:
        """The team candidates of point ``i``: (team index, covers, metres to its base)."""
        tc = self.team_cands
        a, b = int(tc.starts[i]), int(tc.starts[i + 1])
        assert tc.d is not None
        return list(
            zip(tc.v[a:b].tolist(), self._team_cov[a:b].tolist(), tc.d[a:b].tolist(), strict=True)
        )

    # -- chiefs and extents -------------------------------------------------------------------------

    def _chiefs(self) -> None:
        ch = self.ref.chiefs
        self.chiefs_near: dict[int, list[tuple[int, float]]] = {}
        if not len(ch):
            return
        margin = 1.01 * self.radius_m * float(self.k.max())
        pi, qi = ch.mtree.query(self.mgeom, predicate="dwithin", distance=margin)
        d = shapely.distance(self.mgeom[pi], ch.metric[qi]) / self.k[pi]
        ok = d <= self.radius_m
        for p, q, dd in zip(pi[ok].tolist(), qi[ok].tolist(), d[ok].tolist(), strict=True):
            self.chiefs_near.setdefault(p, []).append((q, dd))

    def _extents(self) -> None:
        self.extent_sides: dict[int, tuple[str, ...]] = {}
        ext = self.pts.extent
        if ext is None:
            return
        parts = self.ref.side_parts
        for i, e in enumerate(ext):
            if e is None:
                continue
            hit = parts.tree.query(e, predicate="intersects")
            self.extent_sides[i] = tuple(sorted({parts.cols["side"][j] for j in hit.tolist()}))

    # -- one point's facts -----------------------------------------------------------------

    def facts(self, i: int) -> LocationFacts:
        """The ``LocationFacts`` of point ``i``, as ``layers.locate.facts`` would return them."""
        sides = self.side_list(i)
        g = self.ref.grids.cols
        here = sorted((self._here_ref("grids", j) for j in self.grids_here.keys(i)), key=_code)
        ph = sorted((self._here_ref("police", j) for j in self.police_here.keys(i)), key=_code)
        ng, npol = [], []
        asked = set(self.pts.sides[i]) if self.pts.sides is not None else set()
        for s in sides:
            if s.distance_m > self.radius_m and s.code not in asked:
                continue  # a far side: no decision involves it (as location_facts())
            hit = self._nearest_of("grids", i, s.code)
            if hit is not None:
                j, d = hit
                ng.append(
                    GridRef(
                        g["code"][j], g["name"][j], g["side"][j], g["village_code"][j], bool(g["joint"][j]),
                        g["chief_name"][j], g["chief_phone"][j], False, d, (g["side"][j],),
                    )
                )  # fmt: skip
            hit = self._nearest_of("police", i, s.code)
            if hit is not None:
                j, d = hit
                npol.append(self._police_ref(j, False, d))
        teams = []
        fields = self._team_fields
        for t, cov, dd in self.team_items(i):
            teams.append(TeamCandidate(*fields[t], cov, dd))
        teams.sort(key=lambda t: (t.base_distance_m, t.code))
        chiefs = []
        c = self.ref.chiefs.cols
        for q, dd in self.chiefs_near.get(i, []):
            chiefs.append(
                ChiefRef(
                    c["code"][q],
                    c["role"][q],
                    c["side"][q],
                    c["name"][q],
                    c["phone"][q],
                    c["feature_name"][q],
                    dd,
                )
            )
        chiefs.sort(key=lambda r: (r.distance_m, r.code))
        ext = self.pts.extent[i] if self.pts.extent is not None else None
        return LocationFacts(
            lon=float(self.pts.lon[i]),
            lat=float(self.pts.lat[i]),
            sides=tuple(sides),
            chain=self.chain(i),
            grids_here=tuple(here),
            nearest_grids=tuple(ng),
            police_here=tuple(ph),
            nearest_police=tuple(npol),
            teams=tuple(teams),
            chiefs=tuple(chiefs),
            extent_sides=None if ext is None else self.extent_sides.get(i, ()),
            duplicates=(),
        )
