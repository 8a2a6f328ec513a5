"""Coverage audit on a small synthetic world in EPSG:4544 metres.

Two rectangular districts share the edge x = 4000: Anju (510904) on the west, Tongnan (500152) on
the east, each 4000 m x 2000 m. Each district has two villages of 2000 m x 2000 m, each village
four grids of 1000 m x 1000 m, and each side two police grids, one per row of grids.

Grid codes name their cell: ``510904-G21`` is column 2, row 1 (x 2000-3000, y 1000-2000).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from gis.coverage import (
    KINDS,
    AuditReport,
    DistrictLayer,
    GridLayer,
    PoliceLayer,
    VillageLayer,
    audit_coverage,
    metric_transformer,
    to_feature_collection,
)
from gis.errors import DomainError, InvalidGeometry, InvalidInput, UnknownSide

A, B, C = "510904", "500152", "500151"
CELL = 1000.0
# A plausible EPSG:4544 origin near the Anju-Tongnan line (about 105.5°E, 30.3°N).
ORIGIN = (548_000.0, 3_353_000.0)


@dataclass
class Grid:
    geom: BaseGeometry
    side: str
    village: str
    joint: bool = False


@dataclass
class World:
    districts: dict[str, tuple[BaseGeometry, str]] = field(default_factory=dict)
    villages: dict[str, tuple[BaseGeometry, str]] = field(default_factory=dict)
    grids: dict[str, Grid] = field(default_factory=dict)
    police: dict[str, tuple[BaseGeometry, str]] = field(default_factory=dict)

    def audit(self, min_area_m2: float = 1.0) -> AuditReport:
        return audit_coverage(
            villages=_layer(VillageLayer, self.villages),
            grids=GridLayer(
                codes=list(self.grids),
                geoms=[g.geom for g in self.grids.values()],
                sides=[g.side for g in self.grids.values()],
                village_codes=[g.village for g in self.grids.values()],
                joint=[g.joint for g in self.grids.values()],
            ),
            police_grids=_layer(PoliceLayer, self.police),
            districts=_layer(DistrictLayer, self.districts),
            min_area_m2=min_area_m2,
        )


L = TypeVar("L", VillageLayer, PoliceLayer, DistrictLayer)


def _layer(cls: type[L], rows: dict[str, tuple[BaseGeometry, str]]) -> L:
    return cls(
        codes=list(rows),
        geoms=[g for g, _ in rows.values()],
        sides=[s for _, s in rows.values()],
    )


def make_world() -> World:
    w = World()
    w.districts = {A: (box(0, 0, 4000, 2000), A), B: (box(4000, 0, 8000, 2000), B)}
    for col in range(8):
        side = A if col < 4 else B
        village = f"{side}-V{col // 2 % 2 + 1:02d}"
        if col % 2 == 0:
            w.villages[village] = (box(col * CELL, 0, (col + 2) * CELL, 2 * CELL), side)
        for row in range(2):
            w.grids[f"{side}-G{col}{row}"] = Grid(
                box(col * CELL, row * CELL, (col + 1) * CELL, (row + 1) * CELL), side, village
            )
    for side, x0 in ((A, 0.0), (B, 4000.0)):
        for row in range(2):
            w.police[f"{side}-P01{row + 1:02d}"] = (
                box(x0, row * CELL, x0 + 4000, (row + 1) * CELL),
                side,
            )
    return w


def grid_box(w: World, code: str, *bounds: float, joint: bool | None = None) -> None:
    g = w.grids[code]
    w.grids[code] = replace(g, geom=box(*bounds), joint=g.joint if joint is None else joint)


Expected = list[tuple[str, tuple[str, ...], float]]


def seed_gap(w: World) -> Expected:
    g = w.grids[f"{A}-G00"]
    w.grids[f"{A}-G00"] = replace(g, geom=g.geom.difference(box(200, 200, 400, 300)))
    return [("gap", (f"{A}-V01",), 200 * 100)]


def seed_same_side_overlap(w: World) -> Expected:
    grid_box(w, f"{A}-G00", 0, 0, 1100, 1000)
    return [("overlap", (f"{A}-G00", f"{A}-G10"), 100 * 1000)]


def seed_overlap_and_gap_of_equal_area(w: World) -> Expected:
    # The village's grid areas still sum to its area; the gap must be found all the same.
    grid_box(w, f"{A}-G00", 0, 0, 1100, 1000)
    g = w.grids[f"{A}-G11"]
    w.grids[f"{A}-G11"] = replace(g, geom=g.geom.difference(box(1400, 1200, 1600, 1700)))
    return [
        ("gap", (f"{A}-V01",), 200 * 500),
        ("overlap", (f"{A}-G00", f"{A}-G10"), 100 * 1000),
    ]


def seed_joint_grid_straddles_side_line(w: World) -> Expected:
    # Leaves its Tongnan village only into Anju, and overlaps Anju's G30: both allowed.
    grid_box(w, f"{B}-G40", 3900, 0, 5000, 1000, joint=True)
    return []


def seed_joint_grid_covers_other_side(w: World) -> Expected:
    # Anju's G30 is gone, but Tongnan's joint G40 now covers its cell: no gap, nothing else.
    del w.grids[f"{A}-G30"]
    grid_box(w, f"{B}-G40", 3000, 0, 5000, 1000, joint=True)
    return []


def seed_non_joint_cross_side(w: World) -> Expected:
    # Same shape without the joint flag: it leaves its village, yet is no same-side overlap.
    grid_box(w, f"{B}-G40", 3900, 0, 5000, 1000)
    return [("grid_outside_village", (f"{B}-G40",), 100 * 1000)]


def seed_grid_leaves_district(w: World) -> Expected:
    grid_box(w, f"{A}-G01", 0, 1000, 1000, 2150)
    return [("grid_outside_village", (f"{A}-G01",), 1000 * 150)]


def seed_grid_into_neighbour_village(w: World) -> Expected:
    grid_box(w, f"{A}-G10", 1000, 0, 2250, 1000)
    return [
        ("overlap", (f"{A}-G10", f"{A}-G20"), 250 * 1000),
        ("grid_outside_village", (f"{A}-G10",), 250 * 1000),
    ]


def seed_joint_grid_into_own_side(w: World) -> Expected:
    # Joint status excuses other sides' territory only, not the next village of its own side.
    grid_box(w, f"{A}-G10", 1000, 0, 2250, 1000, joint=True)
    return [
        ("overlap", (f"{A}-G10", f"{A}-G20"), 250 * 1000),
        ("grid_outside_village", (f"{A}-G10",), 250 * 1000),
    ]


def seed_grid_in_wrong_village(w: World) -> Expected:
    # Lies wholly in V01 but is registered to V02. V01 is still covered, so no gap.
    w.grids[f"{A}-G00"] = replace(w.grids[f"{A}-G00"], village=f"{A}-V02")
    return [("grid_outside_village", (f"{A}-G00",), 1000 * 1000)]


def seed_joint_grid_beyond_all_sides(w: World) -> Expected:
    # The strip in Anju (x 3900-4000) is allowed; the strip north of both districts is not.
    grid_box(w, f"{B}-G41", 3900, 1000, 5000, 2100, joint=True)
    return [("grid_outside_village", (f"{B}-G41",), 1100 * 100)]


def seed_split_police(w: World) -> Expected:
    notch = box(0, 620, 1000, 1000)
    w.police[f"{A}-P0101"] = (box(0, 0, 4000, 1000).difference(notch), A)
    w.police[f"{A}-P0102"] = (box(0, 1000, 4000, 2000).union(notch), A)
    return [("grid_split_police", (f"{A}-G00", f"{A}-P0101", f"{A}-P0102"), 1000 * 380)]


def seed_small_police_share(w: World) -> Expected:
    # 0.5 % of G00 in the other police grid is below the 1 % share: not a split.
    notch = box(0, 995, 1000, 1000)
    w.police[f"{A}-P0101"] = (box(0, 0, 4000, 1000).difference(notch), A)
    w.police[f"{A}-P0102"] = (box(0, 1000, 4000, 2000).union(notch), A)
    return []


def seed_police_crosses_side(w: World) -> Expected:
    # Also covers 30 % of Tongnan's G40, which is no split: other sides' police do not count.
    w.police[f"{A}-P0101"] = (box(0, 0, 4300, 1000), A)
    return [("police_crosses_side", (f"{A}-P0101",), 300 * 1000)]


def seed_split_under_other_side_police(w: World) -> Expected:
    # Anju's P0101 wholly covers Tongnan's G40, which its own side's police grids split.
    w.police[f"{A}-P0101"] = (box(0, 0, 5000, 1000), A)
    notch = box(4000, 700, 5000, 1000)
    w.police[f"{B}-P0101"] = (box(4000, 0, 8000, 1000).difference(notch), B)
    w.police[f"{B}-P0102"] = (box(4000, 1000, 8000, 2000).union(notch), B)
    return [
        ("grid_split_police", (f"{B}-G40", f"{B}-P0101", f"{B}-P0102"), 1000 * 300),
        ("police_crosses_side", (f"{A}-P0101",), 1000 * 1000),
    ]


def seed_float_slivers(w: World) -> Expected:
    eps = 1e-4  # 0.1 mm along a 1 km edge: 0.1 m²
    grid_box(w, f"{A}-G00", 0, 0, 1000 - eps, 1000)
    grid_box(w, f"{A}-G11", 1000 - eps, 1000, 2000, 2000)
    w.police[f"{A}-P0101"] = (box(0, 0, 4000 + eps, 1000), A)
    return []


DEFECTS: list[Callable[[World], Expected]] = [
    seed_gap,
    seed_same_side_overlap,
    seed_overlap_and_gap_of_equal_area,
    seed_joint_grid_straddles_side_line,
    seed_joint_grid_covers_other_side,
    seed_non_joint_cross_side,
    seed_grid_leaves_district,
    seed_grid_into_neighbour_village,
    seed_joint_grid_into_own_side,
    seed_grid_in_wrong_village,
    seed_joint_grid_beyond_all_sides,
    seed_split_police,
    seed_small_police_share,
    seed_police_crosses_side,
    seed_split_under_other_side_police,
    seed_float_slivers,
]


def observed(report: AuditReport) -> list[tuple[str, tuple[str, ...]]]:
    return sorted((f.kind, f.codes) for f in report.findings)


def test_clean_world_audits_clean() -> None:
    report = make_world().audit()
    assert report.clean
    assert report.findings == ()
    assert report.summary() == {k: {"count": 0, "area_m2": 0.0} for k in KINDS}
    assert to_feature_collection(report) == {"type": "FeatureCollection", "features": []}


@pytest.mark.parametrize("seed", DEFECTS, ids=[d.__name__.removeprefix("seed_") for d in DEFECTS])
def test_seeded_defect_is_found(seed: Callable[[World], Expected]) -> None:
    w = make_world()
    expected = seed(w)
    report = w.audit()

    assert observed(report) == sorted((k, c) for k, c, _ in expected)
    assert report.clean == (not expected)
    areas: dict[tuple[str, tuple[str, ...]], float] = {
        (f.kind, f.codes): f.area_m2 for f in report.findings
    }
    for kind, codes, area in expected:
        assert areas[(kind, codes)] == pytest.approx(area, rel=0.01)
    for f in report.findings:
        assert shapely.area(f.geometry) == pytest.approx(f.area_m2, rel=1e-9)
        assert f.geometry.geom_type in ("Polygon", "MultiPolygon")


def test_gap_geometry_is_the_hole() -> None:
    w = make_world()
    seed_gap(w)
    (gap,) = w.audit().findings
    assert gap.detail == {"side": A}
    assert gap.geometry.normalize().equals(box(200, 200, 400, 300).normalize())


def test_split_detail_shares_and_rest_geometry() -> None:
    w = make_world()
    seed_split_police(w)
    (split,) = w.audit().findings
    assert split.detail == {"shares": {f"{A}-P0101": 0.62, f"{A}-P0102": 0.38}, "side": A}
    assert list(split.detail["shares"]) == [f"{A}-P0101", f"{A}-P0102"]
    assert split.geometry.equals(box(0, 620, 1000, 1000))


def test_outside_and_crossing_detail() -> None:
    w = make_world()
    seed_grid_leaves_district(w)
    seed_police_crosses_side(w)
    by_kind = w.audit().by_kind()
    (outside,) = by_kind["grid_outside_village"]
    assert outside.detail == {"village": f"{A}-V01", "side": A, "joint": False}
    assert outside.geometry.equals(box(0, 2000, 1000, 2150))
    (crossing,) = by_kind["police_crosses_side"]
    assert crossing.detail == {"side": A, "sides": [B]}
    assert crossing.geometry.equals(box(4000, 0, 4300, 1000))


def test_threshold_is_what_hides_slivers() -> None:
    w = make_world()
    seed_float_slivers(w)
    assert w.audit().clean
    report = w.audit(min_area_m2=0.01)
    assert observed(report) == [
        ("gap", (f"{A}-V01",)),
        ("overlap", (f"{A}-G01", f"{A}-G11")),
        ("police_crosses_side", (f"{A}-P0101",)),
    ]
    for f in report.findings:
        assert f.area_m2 == pytest.approx(0.1, rel=0.01)


def test_summary_and_feature_collection() -> None:
    w = make_world()
    seed_gap(w)
    seed_grid_into_neighbour_village(w)
    seed_police_crosses_side(w)
    report = w.audit()
    summary = report.summary()
    assert summary == {
        "gap": {"count": 1, "area_m2": pytest.approx(20_000)},
        "overlap": {"count": 1, "area_m2": pytest.approx(250_000)},
        "grid_outside_village": {"count": 1, "area_m2": pytest.approx(250_000)},
        "grid_split_police": {"count": 0, "area_m2": 0.0},
        "police_crosses_side": {"count": 1, "area_m2": pytest.approx(300_000)},
    }
    fc = to_feature_collection(report)
    assert [f["properties"]["kind"] for f in fc["features"]] == [
        "gap",
        "overlap",
        "grid_outside_village",
        "police_crosses_side",
    ]
    assert fc["features"][1]["properties"] == {
        "kind": "overlap",
        "codes": [f"{A}-G10", f"{A}-G20"],
        "area_m2": 250_000.0,
        "detail": {"side": A},
    }
    assert fc["features"][0]["geometry"]["type"] == "Polygon"
    gap = shapely.geometry.shape(json.loads(json.dumps(fc))["features"][0]["geometry"])
    assert gap.equals(box(200, 200, 400, 300))


def test_feature_collection_in_wgs84() -> None:
    w = make_world()
    seed_gap(w)
    (gap,) = w.audit().findings
    to_metric, to_wgs84 = metric_transformer()
    shifted = replace(gap, geometry=shapely.affinity.translate(gap.geometry, *ORIGIN))
    fc = to_feature_collection(AuditReport((shifted,)), to_wgs84)
    lonlat = shapely.geometry.shape(fc["features"][0]["geometry"])
    minx, miny, maxx, maxy = lonlat.bounds
    assert 105.4 < minx < maxx < 105.6
    assert 30.2 < miny < maxy < 30.4
    back = to_metric(lonlat)
    assert shapely.hausdorff_distance(back, shifted.geometry) < 1e-3
    assert fc["features"][0]["properties"]["area_m2"] == 20_000.0


def test_third_side_joins() -> None:
    w = make_world()
    w.districts[C] = (box(8000, 0, 12000, 2000), C)
    w.villages[f"{C}-V01"] = (box(8000, 0, 12000, 2000), C)
    w.grids[f"{C}-G80"] = Grid(box(8000, 0, 12000, 2000), C, f"{C}-V01")
    w.police[f"{C}-P0101"] = (box(8000, 0, 12000, 2000), C)
    assert w.audit().clean

    grid_box(w, f"{B}-G70", 7000, 0, 8100, 1000, joint=True)  # into the third side: allowed
    w.police[f"{B}-P0102"] = (box(4000, 1000, 8200, 2000), B)
    report = w.audit()
    assert observed(report) == [("police_crosses_side", (f"{B}-P0102",))]
    assert report.findings[0].detail == {"side": B, "sides": [C]}
    assert report.findings[0].area_m2 == pytest.approx(200 * 1000, rel=0.01)


def test_no_grids_means_every_village_is_a_gap() -> None:
    w = make_world()
    w.grids = {}
    report = w.audit()
    assert observed(report) == sorted(("gap", (v,)) for v in w.villages)
    assert all(f.area_m2 == pytest.approx(4e6) for f in report.findings)


def test_multipolygon_village_with_enclave() -> None:
    w = make_world()
    enclave = box(10_000, 0, 10_500, 500)
    w.districts[A] = (shapely.MultiPolygon([box(0, 0, 4000, 2000), enclave]), A)
    w.villages[f"{A}-V01"] = (shapely.MultiPolygon([box(0, 0, 2000, 2000), enclave]), A)
    report = w.audit()
    assert observed(report) == [("gap", (f"{A}-V01",))]
    assert report.findings[0].geometry.equals(enclave)


@pytest.mark.parametrize(
    ("mutate", "error", "code"),
    [
        (
            lambda w: w.grids.__setitem__(
                f"{A}-G00",
                Grid(shapely.Polygon([(0, 0), (1000, 1000), (1000, 0), (0, 1000)]), A, f"{A}-V01"),
            ),
            InvalidGeometry,
            f"{A}-G00",
        ),
        (
            lambda w: w.grids.__setitem__(f"{A}-G00", Grid(shapely.Point(1, 1), A, f"{A}-V01")),
            InvalidGeometry,
            f"{A}-G00",
        ),
        (
            lambda w: w.grids.__setitem__(f"{A}-G00", Grid(shapely.Polygon(), A, f"{A}-V01")),
            InvalidGeometry,
            f"{A}-G00",
        ),
        (
            lambda w: w.police.__setitem__("X-P1", (box(0, 0, 1, 1), "999999")),
            UnknownSide,
            "999999",
        ),
        (
            lambda w: w.grids.__setitem__("X-G1", Grid(box(0, 0, 1, 1), A, "no-such-village")),
            InvalidInput,
            "X-G1",
        ),
    ],
    ids=["bowtie", "point", "empty", "unknown_side", "unknown_village"],
)
def test_bad_input_is_rejected(
    mutate: Callable[[World], None], error: type[DomainError], code: str
) -> None:
    w = make_world()
    mutate(w)
    with pytest.raises(error) as info:
        w.audit()
    assert code in str(info.value.detail)


def test_duplicate_codes_and_ragged_arrays_are_rejected() -> None:
    with pytest.raises(InvalidInput) as info:
        VillageLayer(codes=["a", "b"], geoms=[box(0, 0, 1, 1)], sides=[A, A])
    assert info.value.detail == {"codes": 2, "geoms": 1, "sides": 2}
    w = make_world()
    dup = VillageLayer(codes=["v", "v"], geoms=[box(0, 0, 1, 1)] * 2, sides=[A, A])
    with pytest.raises(InvalidInput) as info:
        audit_coverage(
            villages=dup,
            grids=GridLayer(codes=[], geoms=[], sides=[], village_codes=[]),
            police_grids=_layer(PoliceLayer, w.police),
            districts=_layer(DistrictLayer, w.districts),
        )
    assert info.value.detail == {"layer": "villages", "codes": ["v"]}
    with pytest.raises(InvalidInput):
        w.audit(min_area_m2=0.0)


# --- properties: random partitions ---------------------------------------------------------


@dataclass
class Partition:
    world: World
    cell_area: dict[str, float]


def _bands(cuts: list[bool]) -> list[int]:
    """Band number of each cell, given which inner cuts (between cell i and i+1) are boundaries."""
    return [0, *np.cumsum(cuts).tolist()]


@st.composite
def partitions(draw: st.DrawFn) -> Partition:
    widths = draw(st.lists(st.floats(5, 3000), min_size=2, max_size=8))
    heights = draw(st.lists(st.floats(5, 3000), min_size=1, max_size=4))
    x0 = draw(st.floats(-100_000, 1_000_000))
    y0 = draw(st.floats(3_200_000, 3_500_000))
    xs = (x0 + np.concatenate([[0.0], np.cumsum(widths)])).tolist()
    ys = (y0 + np.concatenate([[0.0], np.cumsum(heights)])).tolist()
    ncol, nrow = len(widths), len(heights)
    side_cut = draw(st.integers(1, ncol - 1))  # the side line runs between columns
    inner = ncol - 1
    village_cuts = draw(st.lists(st.booleans(), min_size=inner, max_size=inner))
    police_cuts = draw(st.lists(st.booleans(), min_size=inner, max_size=inner))
    police_rows = draw(st.lists(st.booleans(), min_size=nrow - 1, max_size=nrow - 1))
    village_cuts[side_cut - 1] = police_cuts[side_cut - 1] = True
    vband, pband, prow = _bands(village_cuts), _bands(police_cuts), _bands(police_rows)

    def side(col: int) -> str:
        return A if col < side_cut else B

    def span(bands: list[int], band: int, edges: list[float]) -> tuple[float, float]:
        idx = [i for i, b in enumerate(bands) if b == band]
        return edges[idx[0]], edges[idx[-1] + 1]

    w = World()
    w.districts = {
        A: (box(xs[0], ys[0], xs[side_cut], ys[-1]), A),
        B: (box(xs[side_cut], ys[0], xs[-1], ys[-1]), B),
    }
    cell_area = {}
    for col in range(ncol):
        village = f"{side(col)}-V{vband[col]:02d}"
        vx = span(vband, vband[col], xs)
        w.villages[village] = (box(vx[0], ys[0], vx[1], ys[-1]), side(col))
        px = span(pband, pband[col], xs)
        for row in range(nrow):
            code = f"{side(col)}-G{col:02d}{row:02d}"
            cell = box(xs[col], ys[row], xs[col + 1], ys[row + 1])
            w.grids[code] = Grid(cell, side(col), village)
            cell_area[code] = cell.area
            py = span(prow, prow[row], ys)
            w.police[f"{side(col)}-P{pband[col]:02d}{prow[row]:02d}"] = (
                box(px[0], py[0], px[1], py[1]),
                side(col),
            )
    return Partition(w, cell_area)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(partitions())
def test_random_partition_audits_clean(p: Partition) -> None:
    report = p.world.audit()
    assert report.findings == ()


@PROPERTY
@given(partitions(), st.data())
def test_removing_a_grid_leaves_exactly_its_gap(p: Partition, data: st.DataObject) -> None:
    w = copy.deepcopy(p.world)
    code = data.draw(st.sampled_from(sorted(w.grids)))
    removed = w.grids.pop(code)
    report = w.audit()
    assert observed(report) == [("gap", (removed.village,))]
    assert report.findings[0].area_m2 == pytest.approx(p.cell_area[code], rel=1e-9)
    assert report.findings[0].geometry.normalize().equals(removed.geom.normalize())
