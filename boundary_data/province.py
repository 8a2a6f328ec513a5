"""A SYNTHETIC province around the two real districts, for scale tests and benchmarks.

Pure and vectorised: every layer is built from one regular lattice of cells in WGS84 degrees
(about 1.2 km x 1.2 km at 30°N). Blocks of cells make villages, towns and districts, so
neighbours share bit-identical vertices and the area chain nests exactly. Cells within
``gap_deg`` of the real districts are left out, so the real Anju and Tongnan data, and every
routing decision inside them, stay exactly as they are. Everything made here is invented and
flagged ``synthetic``; side codes start with ``99``, which no real province uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from boundary_data.rosters import ROTAS, roster

Geoms = npt.NDArray[np.object_]
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]

SURNAMES = (
    ("张", "Zhang"), ("王", "Wang"), ("李", "Li"), ("刘", "Liu"), ("陈", "Chen"),
    ("杨", "Yang"), ("黄", "Huang"), ("赵", "Zhao"), ("吴", "Wu"), ("周", "Zhou"),
)  # fmt: skip

# Historical mix of categories (weights) and severities: most reports are management,
# disputes and services; red cases are rare.
CATEGORY_WEIGHTS: dict[str, float] = {
    "theft": 6, "fight": 4, "drugs": 0.5, "suspicious_person": 2,
    "land_dispute": 6, "water_dispute": 3, "neighbor_dispute": 9,
    "river_pollution": 2, "illegal_dumping": 6, "forest_fire_hazard": 1.5,
    "illegal_sand_mining": 0.5, "fire": 1, "flood": 0.8, "traffic_accident": 4,
    "geological_hazard": 0.7, "illegal_construction": 8, "floating_population": 7,
    "rental_housing": 6, "market_order": 5, "cross_region_service": 6, "infrastructure": 9,
    "public_service": 12,
}  # fmt: skip
SEVERITY_WEIGHTS: dict[str, float] = {"red": 3, "orange": 12, "yellow": 55, "blue": 30}
OPEN_STATUSES = ("reported", "accepted", "dispatched", "in_progress", "resolved")
OPEN_WEIGHTS = (0.25, 0.2, 0.25, 0.2, 0.1)
CLOSED_STATUSES = ("closed", "rejected", "duplicate")
CLOSED_WEIGHTS = (0.93, 0.05, 0.02)


@dataclass(frozen=True)
class ProvinceSpec:
    """Size of the synthetic province. The defaults give about 200,000 grids."""

    seed: int = 20261127
    cell_dlon: float = 0.0125
    cell_dlat: float = 0.011
    block_cols: int = 40  # cells per district, west-east
    block_rows: int = 36  # cells per district, south-north
    districts_x: int = 11
    districts_y: int = 13
    village_cells: tuple[int, int] = (2, 2)  # cols, rows
    town_villages: tuple[int, int] = (4, 3)
    police_cells: tuple[int, int] = (5, 2)
    teams: int = 500
    gap_deg: float = 0.03  # > the 2,000 m border zone, in both directions, at 30°N
    centre: tuple[float, float] = (105.55, 30.19)


@dataclass
class Layer:
    """One layer as columns: codes, geometries (WGS84) and other columns by name."""

    code: npt.NDArray[np.str_]
    geom: Geoms
    cols: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.code)


@dataclass
class Province:
    districts: Layer
    towns: Layer
    villages: Layer
    grids: Layer
    police: Layer
    teams: list[dict[str, Any]]
    # per grid: lattice cell bounds (for sampling points inside it)
    cell_bounds: Floats


def _person(n: int) -> tuple[str, str]:
    cn, en = SURNAMES[n % len(SURNAMES)]
    return f"演示-{cn}P{n:06d} Demo {en} P{n:06d}", f"000-9{n // 10000:03d}-{n % 10000:04d}"


def _union_groups(
    cells: Geoms, groups: Ints, complete: npt.NDArray[np.bool_], boxes: Geoms
) -> Geoms:
    """Per group: its block's box when every cell is present, else the union of its cells."""
    out = boxes.copy()
    order = np.argsort(groups, kind="stable")
    starts = np.searchsorted(groups[order], np.arange(len(boxes) + 1))
    for g in np.flatnonzero(~complete):
        members = cells[order[starts[g] : starts[g + 1]]]
        out[g] = shapely.union_all(members) if len(members) else None
    return out


def _multi(geoms: Geoms) -> Geoms:
    single = shapely.get_type_id(geoms) == 3
    out = geoms.copy()
    out[single] = shapely.multipolygons(geoms[single][:, None].tolist())
    return out


def build(spec: ProvinceSpec, real_sides: BaseGeometry) -> Province:
    """The synthetic province's layers, leaving a gap of ``spec.gap_deg`` around ``real_sides``."""
    xs, ys, ci, cj, bounds, cells = _lattice(spec, real_sides)

    vc, vr = spec.village_cells
    tc, tr = spec.town_villages
    bc, br = spec.block_cols, spec.block_rows
    # district, then town and village within it, numbered north to south, west to east
    di, dj = ci // bc, cj // br
    d_id = (spec.districts_y - 1 - dj) * spec.districts_x + di
    li, lj = ci % bc, (br - 1) - (cj % br)  # local column, local row from the north
    towns_x = bc // (vc * tc)
    t_local = (lj // (vr * tr)) * towns_x + li // (vc * tc)
    v_local_in_town = ((lj // vr) % tr) * tc + (li // vc) % tc
    g_local_in_village = (lj % vr) * vc + li % vc
    towns_per_d = towns_x * (br // (vr * tr))
    villages_per_t = tc * tr
    v_id = (d_id * towns_per_d + t_local) * villages_per_t + v_local_in_town
    t_id = d_id * towns_per_d + t_local

    d_codes_all = np.array([f"99{n + 1:04d}" for n in range(spec.districts_x * spec.districts_y)])

    def layer_of(ids: Ints, n_all: int, cells_per: int, box_of: Any) -> tuple[Ints, Geoms]:
        present, counts = np.unique(ids, return_counts=True)
        full = np.zeros(n_all, dtype=np.int64)
        full[present] = counts
        boxes = np.array([box_of(k) for k in range(n_all)], dtype=object)
        geoms = _union_groups(cells, ids, full == cells_per, boxes)
        return present, _multi(geoms[present])

    def d_box(k: int) -> Any:
        i, j = k % spec.districts_x, spec.districts_y - 1 - k // spec.districts_x
        return shapely.box(xs[i * bc], ys[j * br], xs[(i + 1) * bc], ys[(j + 1) * br])

    def t_box(k: int) -> Any:
        d, t = divmod(k, towns_per_d)
        i0 = (d % spec.districts_x) * bc + (t % towns_x) * vc * tc
        j_top = (spec.districts_y - 1 - d // spec.districts_x) * br + br
        j1 = j_top - (t // towns_x) * vr * tr
        return shapely.box(xs[i0], ys[j1 - vr * tr], xs[i0 + vc * tc], ys[j1])

    def v_box(k: int) -> Any:
        t, v = divmod(k, villages_per_t)
        d, tl = divmod(t, towns_per_d)
        i0 = (d % spec.districts_x) * bc + (tl % towns_x) * vc * tc + (v % tc) * vc
        j_top = (spec.districts_y - 1 - d // spec.districts_x) * br + br
        j1 = j_top - (tl // towns_x) * vr * tr - (v // tc) * vr
        return shapely.box(xs[i0], ys[j1 - vr], xs[i0 + vc], ys[j1])

    n_d = spec.districts_x * spec.districts_y
    d_present, d_geom = layer_of(d_id, n_d, bc * br, d_box)
    t_present, t_geom = layer_of(t_id, n_d * towns_per_d, vc * tc * vr * tr, t_box)
    v_present, v_geom = layer_of(v_id, n_d * towns_per_d * villages_per_t, vc * vr, v_box)

    d_code, t_code, v_code, g_code = _area_codes(
        d_codes_all,
        (d_present, t_present, v_present),
        (v_id, g_local_in_village),
        towns_per_d,
        villages_per_t,
    )
    g_side = d_codes_all[d_id]

    rng = np.random.default_rng(spec.seed)
    n_g = len(g_code)
    people = rng.integers(0, 10**6, size=n_g)
    chiefs = [_person(int(p)) for p in people]

    # police beats: blocks of police_cells within each district
    pc, pr = spec.police_cells
    beats_x = bc // pc
    b_local = (lj // pr) * beats_x + li // pc
    b_id = d_id * (beats_x * (br // pr)) + b_local
    beats_per_d = beats_x * (br // pr)

    def b_box(k: int) -> Any:
        d, b = divmod(k, beats_per_d)
        i0 = (d % spec.districts_x) * bc + (b % beats_x) * pc
        j_top = (spec.districts_y - 1 - d // spec.districts_x) * br + br
        j1 = j_top - (b // beats_x) * pr
        return shapely.box(xs[i0], ys[j1 - pr], xs[i0 + pc], ys[j1])

    b_present, b_geom = layer_of(b_id, n_d * beats_per_d, pc * pr, b_box)
    b_code = np.array(
        [f"{d_codes_all[b // beats_per_d]}-Q{b % beats_per_d + 1:04d}" for b in b_present.tolist()]
    )
    b_code_of_id = dict(zip(b_present.tolist(), b_code.tolist(), strict=True))
    officers = [_person(int(p)) for p in rng.integers(0, 10**6, size=len(b_code))]

    teams = _teams(spec, rng, xs, ys, d_present, d_geom, d_codes_all)

    return _assemble(
        (d_code, d_geom),
        (t_code, t_geom),
        (v_code, v_geom),
        (g_code, cells, g_side, chiefs, np.array([b_code_of_id[b] for b in b_id.tolist()])),
        (b_code, b_geom, officers),
        teams,
        bounds,
    )


def _area_codes(
    d_codes_all: Any,
    present: tuple[Ints, Ints, Ints],
    cells: tuple[Ints, Ints],
    towns_per_d: int,
    villages_per_t: int,
) -> tuple[Any, Any, Any, Any]:
    """The codes of the districts, towns, villages (of ids ``present``) and grids (each cell's
    village id and its number in the village), nested as the real codes are."""
    d_present, t_present, v_present = present
    v_id, g_local_in_village = cells
    d_code = d_codes_all[d_present]
    t_code = np.char.add(
        d_codes_all[t_present // towns_per_d], (101 + t_present % towns_per_d).astype(str)
    )
    t_code_all = dict(zip(t_present.tolist(), t_code.tolist(), strict=True))
    v_code = np.array(
        [f"{t_code_all[v // villages_per_t]}{201 + v % villages_per_t}" for v in v_present.tolist()]
    )
    v_code_all = dict(zip(v_present.tolist(), v_code.tolist(), strict=True))
    g_code = np.array(
        [
            f"{v_code_all[v]}{g + 1:03d}"
            for v, g in zip(v_id.tolist(), g_local_in_village.tolist(), strict=True)
        ]
    )
    return d_code, t_code, v_code, g_code


def _lattice(
    spec: ProvinceSpec, real_sides: BaseGeometry
) -> tuple[Floats, Floats, Ints, Ints, Floats, Geoms]:
    """The lattice's edges (``xs``, ``ys``) and the cells kept (column, row, bounds, box):
    every cell farther than ``spec.gap_deg`` from ``real_sides``."""
    nx = spec.block_cols * spec.districts_x
    ny = spec.block_rows * spec.districts_y
    x0 = spec.centre[0] - nx * spec.cell_dlon / 2
    y0 = spec.centre[1] - ny * spec.cell_dlat / 2
    xs = np.round(x0 + np.arange(nx + 1) * spec.cell_dlon, 7)
    ys = np.round(y0 + np.arange(ny + 1) * spec.cell_dlat, 7)
    gx, gy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="xy")
    ci, cj = gx.ravel(), gy.ravel()
    bounds = np.column_stack([xs[ci], ys[cj], xs[ci + 1], ys[cj + 1]])
    cells = shapely.box(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3])
    shapely.prepare(real_sides)
    keep = ~shapely.dwithin(real_sides, cells, spec.gap_deg)
    return xs, ys, ci[keep], cj[keep], bounds[keep], cells[keep]


def _assemble(
    districts: tuple[Any, Geoms],
    towns: tuple[Any, Geoms],
    villages: tuple[Any, Geoms],
    grids: tuple[Any, Geoms, Any, list[tuple[str, str]], Any],
    police: tuple[Any, Geoms, list[tuple[str, str]]],
    teams: Any,
    bounds: Floats,
) -> Province:
    """The layers with their names and attributes."""
    d_code, d_geom = districts
    t_code, t_geom = towns
    v_code, v_geom = villages
    g_code, cells, g_side, chiefs, g_police = grids
    b_code, b_geom, officers = police
    n_of = {"district": "示例省区", "town": "示例省镇", "village": "示例省村"}
    return Province(
        districts=Layer(
            d_code,
            d_geom,
            {"name": [f"{n_of['district']}{c} Demo Province District {c}" for c in d_code]},
        ),
        towns=Layer(
            t_code,
            t_geom,
            {
                "name": [f"{n_of['town']}{c} Demo Province Town {c}" for c in t_code],
                "parent": [c[:6] for c in t_code],
            },
        ),
        villages=Layer(
            v_code,
            v_geom,
            {
                "name": [f"{n_of['village']}{c} Demo Province Village {c}" for c in v_code],
                "parent": [c[:9] for c in v_code],
            },
        ),
        grids=Layer(
            g_code,
            _multi(cells),
            {
                "name": [f"示例省网格{c} Demo Province Grid {c}" for c in g_code],
                "village": [c[:12] for c in g_code],
                "side": g_side,
                "chief_name": [p[0] for p in chiefs],
                "chief_phone": [p[1] for p in chiefs],
                "police": g_police,
            },
        ),
        police=Layer(
            b_code,
            b_geom,
            {
                "name": [f"示例省警务区{c} Demo Province Police Beat {c}" for c in b_code],
                "side": [c[:6] for c in b_code],
                "station": [
                    f"示例省派出所{c[:6]}-{int(c[-4:]) // 12:02d} Demo Province Police Station"
                    for c in b_code
                ],
                "officer_name": [p[0] for p in officers],
                "officer_phone": [p[1] for p in officers],
            },
        ),
        teams=teams,
        cell_bounds=bounds,
    )


MECHANISMS = (
    "joint_defense",
    "joint_mediation",
    "joint_governance",
    "joint_response",
    "joint_management",
    "joint_building",
)


def _teams(
    spec: ProvinceSpec,
    rng: np.random.Generator,
    xs: Floats,
    ys: Floats,
    d_present: Ints,
    d_geom: Geoms,
    d_codes_all: npt.NDArray[np.str_],
) -> list[dict[str, Any]]:
    """Joint teams patrolling ~8 km stretches of the lines between synthetic districts."""
    geom_of = dict(zip(d_present.tolist(), d_geom.tolist(), strict=True))
    pairs = []
    for d in d_present.tolist():
        i, j = d % spec.districts_x, d // spec.districts_x
        if i + 1 < spec.districts_x and d + 1 in geom_of:
            pairs.append((d, d + 1, "v"))
        if j + 1 < spec.districts_y and d + spec.districts_x in geom_of:
            pairs.append((d, d + spec.districts_x, "h"))
    half_w = 0.016  # about 1.5 km either side of the line
    half_len = 0.04  # about 4 km along it
    out: list[dict[str, Any]] = []
    tries = 0
    while len(out) < spec.teams and tries < spec.teams * 20:
        tries += 1
        a, b, kind = pairs[int(rng.integers(len(pairs)))]
        ga, gb = geom_of[a], geom_of[b]
        line = shapely.intersection(shapely.boundary(ga), shapely.boundary(gb))
        if line.is_empty or line.length < 2 * half_len:
            continue
        c = line.interpolate(float(rng.uniform(half_len, line.length - half_len)))
        x, y = c.x, c.y
        if kind == "v":
            box = shapely.box(x - half_w, y - half_len, x + half_w, y + half_len)
        else:
            box = shapely.box(x - half_len, y - half_w, x + half_len, y + half_w)
        patrol = shapely.intersection(box, shapely.union(ga, gb))
        if patrol.is_empty or patrol.area < box.area * 0.9:
            continue
        home = (a, b)[int(rng.integers(2))]
        other = b if home == a else a
        hx, hy = shapely.get_coordinates(
            shapely.point_on_surface(shapely.intersection(patrol, geom_of[home]))
        )[0]
        n = len(out) + 1
        mechs = sorted(
            set(rng.choice(MECHANISMS, size=int(rng.integers(1, 3)), replace=False).tolist())
        )
        rota = ROTAS[int(rng.choice(3, p=[0.7, 0.2, 0.1]))]
        members = [
            {"name": _person(10**6 + n * 10 + k)[0], "phone": _person(10**6 + n * 10 + k)[1],
             "side": str(d_codes_all[(home, other)[k % 2]]), "role": "member"}
            for k in range(int(rng.integers(2, 5)))
        ]  # fmt: skip
        out.append(
            {
                "code": f"TP{n:03d}",
                "name": f"示例省联合队TP{n:03d} Demo Province Joint Team TP{n:03d}",
                "kind": "border_governance_service",
                "side": str(d_codes_all[home]),
                "sides": sorted([str(d_codes_all[home]), str(d_codes_all[other])]),
                "mechanisms": mechs,
                "roster": roster(rota),
                "members": members,
                "patrol_area": _multi(np.array([patrol], dtype=object))[0],
                "base": shapely.points(round(float(hx), 7), round(float(hy), 7)),
            }
        )
    return out


@dataclass
class Cases:
    """Synthetic historical cases as columns; times are epoch seconds (UTC)."""

    lon: Floats
    lat: Floats
    category: npt.NDArray[np.str_]
    severity: npt.NDArray[np.str_]
    occurred: Floats
    reported: Floats
    status: npt.NDArray[np.str_]

    def __len__(self) -> int:
        return len(self.lon)


def cases(
    n: int,
    *,
    n_open: int,
    cell_bounds: Floats,
    real_sides: BaseGeometry,
    real_share: float,
    end_epoch: float,
    seed: int,
) -> Cases:
    """``n`` cases over the year before ``end_epoch``, ``n_open`` of them still open (the most
    recent ones are the likeliest to be open). A share ``real_share`` lies in the real districts."""
    rng = np.random.default_rng(seed + 1)
    n_real = round(n * real_share)
    cell = rng.integers(0, len(cell_bounds), size=n - n_real)
    b = cell_bounds[cell]
    u = rng.random((n - n_real, 2))
    lon = b[:, 0] + (b[:, 2] - b[:, 0]) * (0.02 + 0.96 * u[:, 0])
    lat = b[:, 1] + (b[:, 3] - b[:, 1]) * (0.02 + 0.96 * u[:, 1])
    xmin, ymin, xmax, ymax = real_sides.bounds
    shapely.prepare(real_sides)
    found: list[Floats] = []
    total = 0
    while total < n_real:
        xy = rng.uniform((xmin, ymin), (xmax, ymax), size=(max(2 * n_real, 16), 2))
        xy = xy[shapely.contains_xy(real_sides, xy[:, 0], xy[:, 1])]
        found.append(xy)
        total += len(xy)
    real = np.concatenate(found)[:n_real] if n_real else np.empty((0, 2))
    lon = np.round(np.concatenate([lon, real[:, 0]]), 7)
    lat = np.round(np.concatenate([lat, real[:, 1]]), 7)
    perm = rng.permutation(n)
    lon, lat = lon[perm], lat[perm]

    cats = np.array(list(CATEGORY_WEIGHTS))
    w = np.array(list(CATEGORY_WEIGHTS.values()))
    category = cats[rng.choice(len(cats), size=n, p=w / w.sum())]
    sevs = np.array(list(SEVERITY_WEIGHTS))
    w = np.array(list(SEVERITY_WEIGHTS.values()))
    severity = sevs[rng.choice(len(sevs), size=n, p=w / w.sum())]

    # time: uniform day over the year, hour from a daytime-heavy profile (local = UTC+8)
    day = rng.integers(0, 365, size=n)
    hour_w = np.array(
        [1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 9, 8, 9, 10, 10, 9, 8, 7, 6, 5, 4, 2, 1.0]
    )
    hour = rng.choice(24, size=n, p=hour_w / hour_w.sum())
    sec = rng.integers(0, 3600, size=n)
    start = end_epoch - 365 * 86400
    occurred: Floats = np.asarray(
        start + day * 86400.0 + ((hour - 8) % 24) * 3600.0 + sec, dtype=np.float64
    )
    occurred = np.minimum(occurred, end_epoch - 3600)
    reported = occurred + rng.exponential(1800.0, size=n)
    reported = np.minimum(reported, end_epoch - 60)

    # the open cases are mostly the recent ones
    order = np.argsort(-(occurred + rng.exponential(20 * 86400.0, size=n)))
    status = np.empty(n, dtype=object)
    op = order[:n_open]
    status[op] = np.array(OPEN_STATUSES)[rng.choice(5, size=len(op), p=OPEN_WEIGHTS)]
    cl = order[n_open:]
    status[cl] = np.array(CLOSED_STATUSES)[rng.choice(3, size=len(cl), p=CLOSED_WEIGHTS)]
    return Cases(lon, lat, category, severity, occurred, reported, status.astype(str))
