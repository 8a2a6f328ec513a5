"""Province load: `jointgrid demo --scale province` into its own database, timed.

Makes the database the other benchmarks use (``jointgrid_bench_province``): the real
districts and the demo, plus the SYNTHETIC province (about 200,000 grids, 20,000 police
beats, 500 teams) and 2,000,000 historical cases, 1,000,000 of them open for the re-route.
Anchor: the seed of the two real districts, loaded in the same run the ordinary way.
"""

from __future__ import annotations

import os
import time

from bench._common import PROVINCE_DB, create_db, table, write_section


def main() -> None:
    from api import settings
    from api.catalogue import load_catalogue
    from api.usecases.demo import run
    from layers.db import connect

    n_cases = int(os.environ.get("JOINTGRID_BENCH_CASES", "2000000"))
    n_open = int(os.environ.get("JOINTGRID_BENCH_OPEN", "1000000"))
    t0 = time.perf_counter()
    url = create_db(PROVINCE_DB, seed=True)  # migrations + the ordinary seed (the anchor)
    seed_s = time.perf_counter() - t0
    cat = load_catalogue(settings.data().catalogue)
    with connect(url) as conn:
        rep = run(
            conn,
            scale="province",
            catalogue=cat,
            boundary_dir=settings.data().boundary_dir,
            cases=n_cases,
            open_cases=n_open,
            say=print,
        ).as_dict()
        sizes = conn.execute(
            "SELECT pg_size_pretty(pg_database_size(current_database())) AS db,"
            " (SELECT count(*) FROM grids) AS grids, (SELECT count(*) FROM police_grids) AS police,"
            " (SELECT count(*) FROM teams) AS teams, (SELECT count(*) FROM areas WHERE level ="
            " 'district') AS sides, (SELECT count(*) FROM incidents) AS cases,"
            " (SELECT count(*) FROM incident_events) AS events"
        ).fetchone()
    total = rep["total_seconds"]
    rows = [{"step": k, "seconds": v} for k, v in rep["seconds"].items()]
    body = f"""
Loaded: {sizes["sides"]} sides, {sizes["grids"]:,} grids, {sizes["police"]:,} police grids,
{sizes["teams"]} teams, {sizes["cases"]:,} cases ({n_open:,} open), {sizes["events"]:,} audit
events; database {sizes["db"]}.

**Province load: {total:,.0f} s** ({total / 60:.1f} min), all COPY; anchor: migrating and seeding
the two real districts took {seed_s:.1f} s in the same run.

{table(rows, ["step", "seconds"])}
"""
    write_section("province", "Province load (`jointgrid demo --scale province`)", body)
    print(body)


if __name__ == "__main__":
    main()
