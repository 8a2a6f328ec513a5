"""Stored decisions against a full pass of the current engine, on a database of your choice.

``populate``: report cases through the report path (``api.usecases.cases.report``) at points chosen to
probe the rules on the demo layers: on the line, about 30, 900, 1,990, 2,000 and 2,600 m from
it on both sides, in the joint grids, in gaps and outside, and with parties from the other
side. ``compare``: decide every open case again (a full dry-run re-route) and list each case
whose routing differs from the one stored, with its point: the cases where the engine that
stored them and the current one disagree.

    DATABASE_URL=... .venv/bin/python -m scripts.decisions_check populate
    DATABASE_URL=... .venv/bin/python -m scripts.decisions_check compare [out.json]
    DATABASE_URL=... .venv/bin/python -m scripts.decisions_check dump out.jsonl

``dump``: decide every open case from its facts in full (as a report does), at one fixed
time, and write each case's stored routing record (``routing_record``: routing_sig, teams,
contacts, the trace's steps with their data and says) as one line of JSON, ordered by case
code, and the md5 of the whole on stdout. Run before and after a change of ``decide``: equal
files prove that the change stores what was stored before.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

CATS = (
    "land_dispute",
    "theft",
    "river_pollution",
    "traffic_accident",
    "forest_fire_hazard",
    "fire",
)


@dataclass(frozen=True)
class Probe:
    """Where to put probing points on the demo layers: ``along`` places on the line, each on
    the line and at ``distances`` metres from it on both sides; ``joint`` (count, seed) points
    in each joint grid; ``random`` points in and around both districts (gaps and outside
    included); ``parties`` points deep inside a side, ``party_m`` metres apart and moving by
    ``party_f`` (start, step) along the line, with parties from the other side."""

    seed: int
    along: int
    distances: tuple[float, ...]
    joint: tuple[int, int]
    random: int
    parties: int
    party_m: float
    party_f: tuple[float, float]


CHECK = Probe(14, 40, (30.0, 900.0, 1990.0, 1999.5, 2000.5, 2010.0, 2600.0, 6000.0), (12, 5),
              1500, 40, 150.0, (0.05, 0.022))  # fmt: skip


def probe_points(conn: Any, probe: Probe = CHECK) -> list[tuple[float, float, tuple[str, ...]]]:
    """The points of ``probe``, each with the sides of its parties (also for tests)."""
    from tests.geo import ANJU, TONGNAN, line_vertex, point_inside

    rng = np.random.default_rng(probe.seed)
    pts: list[tuple[float, float, tuple[str, ...]]] = []
    for f in np.linspace(0.02, 0.98, probe.along):
        pts.append((*line_vertex(float(f)), ()))
        for side in (ANJU, TONGNAN):
            for m in probe.distances:
                # the line may bend too much there for this distance: then no point
                with contextlib.suppress(AssertionError):
                    pts.append((*point_inside(side, m, float(f)), ()))
    for r in conn.execute(
        "SELECT ST_X(p) AS x, ST_Y(p) AS y FROM (SELECT (ST_DumpPoints("
        "ST_GeneratePoints(geom, %s, %s))).geom AS p FROM grids WHERE joint) s",
        probe.joint,
    ):
        pts.append((r["x"], r["y"], ()))
    box = conn.execute(
        "SELECT ST_XMin(e) AS a, ST_YMin(e) AS b, ST_XMax(e) AS c, ST_YMax(e) AS d"
        " FROM (SELECT ST_Extent(geom) AS e FROM areas WHERE level = 'district'"
        " AND code IN (%s, %s)) s",
        (ANJU, TONGNAN),
    ).fetchone()
    for x, y in zip(
        rng.uniform(box["a"] - 0.01, box["c"] + 0.01, probe.random),
        rng.uniform(box["b"] - 0.01, box["d"] + 0.01, probe.random),
        strict=True,
    ):
        pts.append((float(x), float(y), ()))
    f0, df = probe.party_f
    for k in range(probe.parties):
        with contextlib.suppress(AssertionError):
            x, y = point_inside(ANJU if k % 2 else TONGNAN, 3000.0 + probe.party_m * k, f0 + df * k)
            pts.append((x, y, (TONGNAN if k % 2 else ANJU,)))
    return pts


def populate() -> None:
    from api import settings
    from api.catalogue import load_catalogue
    from api.usecases.cases import report
    from api.usecases.schemas import ReportIn
    from gis.errors import DomainError
    from layers.db import connect

    cat = load_catalogue(settings.data().catalogue)
    cats = [c for c in CATS if c in cat.categories] or sorted(cat.categories)
    made = refused = 0
    with connect(settings.database().require_url()) as conn:
        conn.autocommit = True
        for i, (x, y, parties) in enumerate(probe_points(conn)):
            body = ReportIn(lon=x, lat=y, category=cats[i % len(cats)], severity="yellow",
                            parties_sides=list(parties), description="decisions check")  # fmt: skip
            try:
                report(conn, body, cat, idempotency_key=f"decisions-check-{i}",
                       actor={"kind": "system", "task": "decisions_check"})  # fmt: skip
                made += 1
            except DomainError:
                refused += 1
    print(json.dumps({"made": made, "refused": refused}))


def compare(out: str | None) -> None:
    from api import settings
    from api.catalogue import load_catalogue
    from api.usecases.reroute import reroute
    from layers.db import connect

    cat = load_catalogue(settings.data().catalogue)
    with connect(settings.database().require_url()) as conn:
        conn.autocommit = True
        s = reroute(conn, cat, full=True, dry_run=True)
        rows = []
        if s.changed_codes:
            rows = conn.execute(
                "SELECT code, ST_X(geom) AS lon, ST_Y(geom) AS lat, distance_to_border_m,"
                " sides, mechanism, input FROM incidents WHERE code = ANY(%s) ORDER BY code",
                (s.changed_codes,),
            ).fetchall()
    doc = {"summary": s.as_dict(), "differ": [
        {**r, "input": r["input"]} for r in rows
    ]}  # fmt: skip
    text = json.dumps(doc, indent=1, default=str, ensure_ascii=False)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
    print(json.dumps(s.as_dict(), default=str))


DUMP_NOW = "2026-11-27T02:30:00+00:00"  # 10:30 in Shanghai, a Friday: day shifts on


def dump(out: str) -> None:
    import hashlib
    from datetime import datetime

    import orjson

    from api import settings
    from api.catalogue import load_catalogue
    from api.usecases import reroute as rr
    from gis.errors import DomainError
    from gis.routing import decide, routing_record
    from layers.db import connect

    cat = load_catalogue(settings.data().catalogue)
    now = datetime.fromisoformat(DUMP_NOW)
    with connect(settings.database().require_url()) as conn:
        conn.autocommit = True
        df = rr._read(conn, cat, open_only=True, candidates=False, far=True)
    reports, by_key = rr._reports(df), rr._facts_by_key(df)
    lines = []
    for code, rep, key in zip(df["code"].tolist(), reports, df["key"].tolist(), strict=True):
        try:
            rec: object = routing_record(decide(rep, by_key[key], cat, now=now), now)
        except DomainError as exc:
            rec = {"error": exc.code, "message": exc.message}
        lines.append(orjson.dumps({"case": code, "record": rec}, option=orjson.OPT_SORT_KEYS))
    lines.sort()
    blob = b"\n".join(lines) + b"\n"
    with open(out, "wb") as fh:
        fh.write(blob)
    print(json.dumps({"cases": len(lines), "md5": hashlib.md5(blob).hexdigest()}))


if __name__ == "__main__":
    if sys.argv[1] == "populate":
        populate()
    elif sys.argv[1] == "dump":
        dump(sys.argv[2])
    else:
        compare(sys.argv[2] if len(sys.argv) > 2 else None)
