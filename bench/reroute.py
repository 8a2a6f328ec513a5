"""Batch re-route: `jointgrid reroute` over the open cases of the province after a boundary
change, beside two ceilings measured in the same run on the same points and grid polygons:
a raw PostGIS set join (points to grids), and shapely ``STRtree.query(points, "within")``.

In order: a full pass (every open case decided; it records the run the next one starts from),
the boundary change, the re-route after it (by default only the cases the change can reach),
and a full dry run, which must find nothing left to change: the proof, in the same run, that
the cases left out were routed as a full pass routes them.

``python -m bench.reroute --full-dry-run [URL]`` measures only a full dry-run pass (nothing
written, no boundary change) beside the raw join, measured first in the same process, on the
database at URL (default: the province), and prints its phases: the figures of the re-route
analysis in docs/performance.md.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import shapely

from bench._common import province_url, table, write_section

OPEN = "('reported', 'accepted', 'dispatched', 'in_progress', 'resolved')"


def boundary_change(conn) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Move one column of cells (about 1.25 km) along the whole shared line of two synthetic
    districts from the east one to the west one: the districts' polygons change, the grids not."""
    row = conn.execute(
        "SELECT a.code AS west, b.code AS east, ST_XMax(a.geom) AS x, ST_YMin(b.geom) AS y0,"
        " ST_YMax(b.geom) AS y1 FROM areas a JOIN areas b ON b.code = ("
        "  lpad((a.code::int + 1)::text, 6, '0')) AND b.level = 'district'"
        " WHERE a.level = 'district' AND a.code LIKE '99%%' AND ST_Touches(a.geom, b.geom)"
        " ORDER BY a.code OFFSET 60 LIMIT 1"
    ).fetchone()
    with conn.transaction():
        conn.execute(
            "WITH strip AS (SELECT ST_MakeEnvelope(%(x)s, %(y0)s, %(x)s + 0.0125, %(y1)s, 4326) AS s)"
            " UPDATE areas a SET geom = ST_Multi(CASE WHEN a.code = %(w)s"
            "   THEN ST_Union(a.geom, ST_Intersection(b.geom, s.s))"
            "   ELSE ST_Difference(a.geom, s.s) END)"
            " FROM strip s, areas b WHERE a.code IN (%(w)s, %(e)s) AND b.code = %(e)s",
            {"x": row["x"], "y0": row["y0"], "y1": row["y1"], "w": row["west"], "e": row["east"]},
        )
    return dict(row)


def main() -> None:
    from api import settings
    from api.catalogue import load_catalogue
    from api.usecases.reroute import reroute
    from layers.db import connect

    cat = load_catalogue(settings.data().catalogue)
    url = province_url()
    with connect(url) as conn:
        conn.autocommit = True
        n_open = conn.execute(
            f"SELECT count(*) AS n FROM incidents WHERE status IN {OPEN}"
        ).fetchone()["n"]
        t = time.perf_counter()
        whole = reroute(conn, cat, full=True, say=print)
        full_s = time.perf_counter() - t
        moved = boundary_change(conn)
        t = time.perf_counter()
        summary = reroute(conn, cat, say=print)
        batch_s = time.perf_counter() - t
        check = reroute(conn, cat, full=True, dry_run=True, say=print)

        # ceilings on the same points and grid polygons
        t = time.perf_counter()
        joined = conn.execute(
            f"SELECT count(*) AS n FROM incidents i JOIN grids g ON ST_Intersects(g.geom, i.geom)"
            f" WHERE i.status IN {OPEN}"
        ).fetchone()["n"]
        pg_s = time.perf_counter() - t
        xy = np.array(
            [(r["x"], r["y"]) for r in conn.execute(
                f"SELECT ST_X(geom) AS x, ST_Y(geom) AS y FROM incidents WHERE status IN {OPEN}")]
        )  # fmt: skip
        grid_geoms = shapely.from_wkb(
            [bytes(r["g"]) for r in conn.execute("SELECT ST_AsBinary(geom) AS g FROM grids")]
        )
    pts = shapely.points(xy)
    tree = shapely.STRtree(grid_geoms)
    t = time.perf_counter()
    hits = tree.query(pts, predicate="within")
    tree_s = time.perf_counter() - t

    n = n_open
    rows = [
        {"what": f"re-route after the change ({summary.mode}: {summary.examined:,} cases "
                 "within reach decided, changes written)",
         "seconds": round(batch_s, 1), "points_per_s": round(n / batch_s)},
        {"what": f"full pass before the change (all {whole.examined:,} open cases decided)",
         "seconds": round(full_s, 1), "points_per_s": round(whole.examined / full_s)},
        {"what": "ceiling: raw PostGIS set join, points to grids", "seconds": round(pg_s, 1),
         "points_per_s": round(n_open / pg_s)},
        {"what": "ceiling: shapely STRtree.query(points, 'within') over the grids",
         "seconds": round(tree_s, 1), "points_per_s": round(len(xy) / tree_s)},
    ]  # fmt: skip
    phases = [
        {"run": run, "phase": k, "seconds": round(v, 2)}
        for run, s in (("after the change", summary), ("full pass", whole))
        for k, v in s.seconds.items()
    ]
    proven = check.changed == 0 and check.failed == whole.failed
    ok = full_s <= 3 * pg_s and proven
    body = f"""
{n:,} open cases; boundary change: a 1.25 km strip along the whole line between synthetic
districts {moved["east"]} and {moved["west"]} moves to {moved["west"]}. The re-route after it
({summary.mode}: {summary.why}) decided the {summary.examined:,} open cases within reach and
changed {summary.changed:,} (by part: {dict(summary.by_change)}), failed {summary.failed}.
A full dry run right after decided all {check.examined:,} open cases and found
**{check.changed} left to change** ({"the cases left out were routed as a full pass routes them" if proven else "NOT EQUAL to a full pass"}).
Join check: {joined:,} PostGIS pairs, {len(hits[0]):,} STRtree pairs.

{table(rows, ["what", "seconds", "points_per_s"])}

**{batch_s:.1f} s for the {n:,} open cases after the change**, {batch_s / pg_s:.2f}× the raw
PostGIS join's time, {batch_s / tree_s:.1f}× the STRtree's. A full pass, which every case needs
after a change of the catalogue, took **{full_s:.1f} s**: {full_s / pg_s:.2f}× the raw join's
time (target ≤ 3×: {"met" if ok else "missed"}).

{table(phases, ["run", "phase", "seconds"])}
"""
    write_section("reroute", "Batch re-route", body)
    print(body)


def full_dry_run(url: str) -> dict[str, object]:
    """A full dry-run pass beside the raw join of the same open cases, measured just before."""
    from api import settings
    from api.catalogue import load_catalogue
    from api.usecases.reroute import reroute
    from layers.db import connect

    cat = load_catalogue(settings.data().catalogue)
    with connect(url) as conn:
        conn.autocommit = True
        t = time.perf_counter()
        conn.execute(
            f"SELECT count(*) AS n FROM incidents i JOIN grids g ON ST_Intersects(g.geom, i.geom)"
            f" WHERE i.status IN {OPEN}"
        ).fetchone()
        join_s = time.perf_counter() - t
        t = time.perf_counter()
        s = reroute(conn, cat, full=True, dry_run=True, say=print)
        whole_s = time.perf_counter() - t
    return {"raw_join_s": round(join_s, 2), "whole_pass_s": round(whole_s, 2),
            "x_raw_join": round(whole_s / join_s, 1), "examined": s.examined,
            "changed": s.changed, "failed": s.failed,
            "phases": {k: round(v, 2) for k, v in s.seconds.items()}}  # fmt: skip


if __name__ == "__main__":
    if "--full-dry-run" in sys.argv:
        rest = sys.argv[sys.argv.index("--full-dry-run") + 1 :]
        print(json.dumps(full_dry_run(rest[0] if rest else province_url()), ensure_ascii=False))
    else:
        main()
