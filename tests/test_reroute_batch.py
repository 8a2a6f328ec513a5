"""The batch re-route's facts are the report path's, and lead to the same decisions.

For a few hundred points on the demo data (on the line, near it, in the joint grids, in the
gaps outside both districts, far inside, with and without parties), the facts engine asked
for many points at once (``layers.locate.facts_of_points``, as the batch asks it) gives each
point the facts it gives that point alone (``layers.locate.facts``, as a report asks it); and
without the far sides (how the re-route compares) ``gis.routing.decide`` makes the same
choices.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import numpy as np

from api.usecases.reroute import reroute
from gis.errors import DomainError
from gis.routing import Report, decide, decision_view, signature
from layers import locate
from tests.geo import ANJU, TONGNAN, hand_strip_to_anju, line_vertex, point_inside

NOW = datetime(2026, 11, 27, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai, a Friday: day shifts on


def _points(conn) -> list[tuple[float, float, tuple[str, ...]]]:
    rng = np.random.default_rng(7)
    pts: list[tuple[float, float, tuple[str, ...]]] = []
    for f in np.linspace(0.02, 0.98, 25):
        pts.append((*line_vertex(float(f)), ()))  # on the line itself
        for side in (ANJU, TONGNAN):
            for m in (30.0, 900.0, 1990.0, 2600.0):
                # the line may bend too much there for this distance: then no point
                with contextlib.suppress(AssertionError):
                    pts.append((*point_inside(side, m, float(f)), ()))
    for r in conn.execute(
        "SELECT ST_X(p) AS x, ST_Y(p) AS y FROM (SELECT (ST_DumpPoints(ST_GeneratePoints(geom, 8, 3))).geom AS p"
        " FROM grids WHERE joint) s"
    ):
        pts.append((r["x"], r["y"], ()))
    box = conn.execute(
        "SELECT ST_XMin(e) AS a, ST_YMin(e) AS b, ST_XMax(e) AS c, ST_YMax(e) AS d"
        " FROM (SELECT ST_Extent(geom) AS e FROM areas WHERE level = 'district') s"
    ).fetchone()
    for x, y in zip(
        rng.uniform(box["a"] - 0.01, box["c"] + 0.01, 120),
        rng.uniform(box["b"] - 0.01, box["d"] + 0.01, 120),
        strict=True,
    ):
        pts.append((float(x), float(y), ()))  # far inside, in gaps and holes, and outside
    for k in range(20):
        try:
            x, y = point_inside(ANJU if k % 2 else TONGNAN, 3000.0 + 200 * k, 0.1 + 0.04 * k)
        except AssertionError:
            continue
        pts.append((x, y, (TONGNAN if k % 2 else ANJU,)))  # parties from the other side
    return pts


def _decide(rep: Report, f, catalogue):  # type: ignore[no-untyped-def]
    try:
        return decide(rep, f, catalogue, now=NOW)
    except DomainError as exc:
        return exc.code


def test_batch_facts_give_the_per_row_decisions(conn, catalogue):
    pts = _points(conn)
    assert len(pts) >= 300
    cats = sorted(catalogue.categories)
    category = [cats[i % len(cats)] for i in range(len(pts))]
    mech = [catalogue.mechanism_for(c) for c in category]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    parties = [p[2] for p in pts]
    zone = catalogue.border_zone_m
    full = locate.facts_of_points(conn, xs, ys, radius_m=zone, mechanism=mech, sides=parties)
    near = locate.facts_of_points(
        conn, xs, ys, radius_m=zone, mechanism=mech, sides=parties, far=False
    )
    assert len(set(near.keys)) < len(set(full.keys))  # without the far sides, facts repeat
    decided = 0
    for i, (x, y, asked) in enumerate(pts):
        rep = Report(x, y, category[i], "yellow", NOW, parties_sides=asked)
        one = locate.facts(
            conn, lon=x, lat=y, radius_m=catalogue.border_zone_m, mechanism=mech[i],
            sides=asked, teams_if_cross=True,
        )  # fmt: skip
        assert locate.to_facts(x, y, full.docs[full.keys[i]]) == one, i
        many = locate.to_facts(x, y, near.docs[near.keys[i]])
        a, b = _decide(rep, one, catalogue), _decide(rep, many, catalogue)
        if isinstance(a, str) or isinstance(b, str):
            assert a == b, (i, x, y, a, b)
            continue
        decided += 1
        assert signature(a) == signature(b), (i, x, y)
        va, vb = decision_view(a), decision_view(b)
        for key in ("side", "sides", "cross_boundary_reasons", "mechanism", "lead_side", "grid",
                    "police_grid"):  # fmt: skip
            assert va[key] == vb[key], (i, key, va[key], vb[key])
        assert [t["code"] for t in va["teams"]] == [t["code"] for t in vb["teams"]]
        # the far side is all that is left out: within the zone, the same sides and distances
        assert [s for s in one.sides if s.contains or s.distance_m <= 2000.0] == list(
            s for s in many.sides if s.contains or s.distance_m <= 2000.0
        )
    assert decided >= 200


def test_batch_reroute_writes_changes_set_wise(conn, client, catalogue):
    """A boundary change: the batch finds the cases whose routing moved, writes them and one
    audit event each, and a second pass finds nothing."""
    made = []
    for f in (0.2, 0.3, 0.45, 0.55, 0.65, 0.75):
        try:
            x, y = point_inside(ANJU, 600.0, f)
        except AssertionError:
            continue
        r = client.post(
            "/api/v1/incidents",
            json={"lon": x, "lat": y, "category": "theft", "severity": "orange"},
        )
        assert r.status_code == 201, r.text
        made.append(r.json())
    assert len(made) >= 3
    assert reroute(conn, catalogue, dry_run=True).changed == 0
    # Tongnan hands a 3 km strip along the line to Anju: cases there now lie deep in Anju.
    hand_strip_to_anju(conn, 3000)
    done = reroute(conn, catalogue)
    assert done.changed >= len(made) and done.failed == 0
    for case in made:
        after = client.get(f"/api/v1/incidents/{case['id']}").json()
        assert after["sides"] == [ANJU] and not after["cross_boundary"]
        events = client.get(f"/api/v1/incidents/{case['id']}/events").json()["events"]
        assert events[-1]["action"] == "reroute"
        assert {"sides", "mechanism"} <= set(events[-1]["payload"]["changed"])
    chain = conn.execute(
        "SELECT count(*) AS n FROM incident_events e WHERE e.hash IS DISTINCT FROM"
        " incident_event_digest(e.prev_hash, e)"
    ).fetchone()
    assert chain["n"] == 0
    assert reroute(conn, catalogue).changed == 0
