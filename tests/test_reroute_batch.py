"""The batch re-route's facts are the report path's, and lead to the same decisions.

For a few hundred points on the demo data (on the line, near it, in the joint grids, in the
gaps outside both districts, far inside, with and without parties), the facts engine asked
for many points at once (``layers.locate.facts_of_points``, as the batch asks it) gives each
point the facts it gives that point alone (``layers.locate.facts``, as a report asks it); and
without the far sides (how the re-route compares) ``gis.routing.decide`` makes the same
choices.
"""

from __future__ import annotations

from datetime import UTC, datetime

from api.usecases.reroute import reroute
from gis.errors import DomainError
from gis.routing import Report, decide, decision_view, signature
from layers import locate
from scripts.decisions_check import Probe, probe_points
from tests.geo import ANJU, hand_strip_to_anju, point_inside

NOW = datetime(2026, 11, 27, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai, a Friday: day shifts on


# on the line and near it, in the joint grids, far inside, in the gaps and outside, with parties
PROBE = Probe(7, 25, (30.0, 900.0, 1990.0, 2600.0), (8, 3), 120, 20, 200.0, (0.1, 0.04))


def _decide(rep: Report, f, catalogue):  # type: ignore[no-untyped-def]
    try:
        return decide(rep, f, catalogue, now=NOW)
    except DomainError as exc:
        return exc.code


def test_batch_facts_give_the_per_row_decisions(conn, catalogue):
    pts = probe_points(conn, PROBE)
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
