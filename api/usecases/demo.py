"""``jointgrid demo``: the demo data at a chosen scale.

``--scale demo`` is today's seed (the real districts and the synthetic demo layers).
``--scale province`` adds a SYNTHETIC province around them (``boundary_data.province``): about 200,000
grids, 20,000 police beats, 500 teams and 2,000,000 historical cases, loaded with COPY.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from api.usecases.loading import seed
from api.usecases.reroute import bulk_decisions
from boundary_data import province as prov
from gis.catalogue import Catalogue
from layers import border
from layers import demo as store
from layers.db import Conn


@dataclass
class DemoReport:
    scale: str
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "total_seconds": round(sum(self.seconds.values()), 1),
            "counts": self.counts,
            "skipped": self.skipped,
        }


class _Clock:
    def __init__(self, report: DemoReport, say: Callable[[str], None]) -> None:
        self.report, self.say = report, say

    def step(self, name: str) -> Any:
        clock = self

        class _Step:
            def __enter__(self) -> None:
                self.t = time.perf_counter()
                clock.say(f"{name} ...")

            def __exit__(self, *exc: object) -> None:
                dt = time.perf_counter() - self.t
                clock.report.seconds[name] = clock.report.seconds.get(name, 0.0) + dt
                clock.say(f"{name}: {dt:.1f} s")

        return _Step()


def run(
    conn: Conn,
    *,
    scale: str,
    catalogue: Catalogue,
    boundary_dir: Any,
    cases: int | None = None,
    open_cases: int | None = None,
    spec: prov.ProvinceSpec | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> DemoReport:
    """Load the demo at ``scale`` ("demo" or "province"); re-running loads nothing twice."""

    report = DemoReport(scale)
    clock = _Clock(report, say)
    with clock.step("seed (real districts and the demo layers)"):
        seed(conn, boundary_dir, catalogue=catalogue)
        conn.commit()
    if scale == "demo":
        return report
    spec = spec or prov.ProvinceSpec()
    if store.province_loaded(conn):
        report.skipped.append("province layers (already loaded)")
    else:
        with clock.step("generate province layers"):
            real = store.real_sides(conn)
            p = prov.build(spec, real)
        with clock.step("COPY province layers"):
            report.counts.update(store.load_province_layers(conn, p))
        with clock.step("derive border lines and zones"), conn.transaction():
            border.derive(conn, width_m=catalogue.border_zone_m)
        with clock.step("analyze"):
            store.analyze(conn)
    n = 2_000_000 if cases is None else cases
    n_open = min(n, 200_000 if open_cases is None else open_cases)
    have_cases = store.province_cases(conn)
    if have_cases:
        report.skipped.append(f"province cases ({have_cases:,} already loaded)")
        return report
    with clock.step("generate cases"):
        real = store.real_sides(conn)
        cell_bounds = store.cell_bounds(conn)
        c = prov.cases(
            n,
            n_open=n_open,
            cell_bounds=cell_bounds,
            real_sides=real,
            real_share=0.02,
            end_epoch=time.time() - 3600,
            seed=spec.seed,
        )
    with clock.step("route cases (set-based facts, pure decision)"):
        routing = bulk_decisions(conn, c, catalogue=catalogue, say=say)
    with clock.step("COPY cases and events"):
        report.counts.update(store.load_cases(conn, c, routing, catalogue=catalogue, say=say))
    with clock.step("vacuum and analyze cases"):
        store.analyze(conn, cases=True)
    return report
