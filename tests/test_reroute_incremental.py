"""The re-route after a change decides only the cases the change can reach, and finds exactly
what a full pass finds (migration 0010, ``layers.changes``).

Each kind of change is made after a recorded full re-route; the incremental dry run and a
full dry run must then name the same changed cases, field by field. After the incremental
run writes, a full pass finds nothing left to change and the changes are consumed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from api.usecases.reroute import reroute
from gis.errors import Conflict
from layers import changes
from tests.geo import ANJU, TONGNAN, hand_strip_to_anju, point_inside

CATS = ("theft", "land_dispute", "traffic_accident", "river_pollution", "forest_fire_hazard")
NOW = datetime(2026, 11, 27, 2, 30, tzinfo=UTC)
OPEN = "status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved')"


def _report_many(client: Any) -> int:
    made = 0
    for k, f in enumerate(np.linspace(0.1, 0.9, 9)):
        for side, m in ((ANJU, 300.0), (ANJU, 1800.0), (ANJU, 6000.0), (TONGNAN, 700.0),
                        (TONGNAN, 2600.0), (TONGNAN, 9000.0)):  # fmt: skip
            try:
                x, y = point_inside(side, m + 10 * k, float(f))
            except AssertionError:
                continue
            body: dict[str, Any] = {
                "lon": x, "lat": y, "category": CATS[k % len(CATS)], "severity": "blue",
            }  # fmt: skip
            if k == 4 and m == 6000.0:
                body["parties_sides"] = [TONGNAN]  # routing that looks at any distance
            r = client.post("/api/v1/incidents", json=body)
            assert r.status_code == 201, r.text
            made += 1
    return made


def _strip(conn: Any) -> None:
    hand_strip_to_anju(conn, 1500)


def _grid_chiefs(conn: Any) -> None:
    """New chiefs for a few grids that hold open cases (an attribute change only)."""
    conn.execute(
        "UPDATE grids g SET chief_name = g.chief_name || ' (successor)' WHERE g.code IN ("
        f" SELECT DISTINCT i.grid_code FROM incidents i WHERE i.{OPEN} AND i.grid_code IS NOT NULL"
        "  ORDER BY 1 LIMIT 3)"
    )


def _police_shrink(conn: Any) -> None:
    """Police grids holding cases shrink by about 300 m (a geometry change only)."""
    conn.execute(
        "UPDATE police_grids p SET geom = ST_Multi(ST_Buffer(p.geom, -0.003)) WHERE p.code IN ("
        f" SELECT DISTINCT i.police_grid_code FROM incidents i WHERE i.{OPEN}"
        "  AND i.police_grid_code IS NOT NULL ORDER BY 1 LIMIT 2)"
    )


def _team_off_duty(conn: Any) -> None:
    """The team picked most often is never on duty any more."""
    conn.execute(
        "UPDATE teams SET roster = '{\"shifts\": []}'::jsonb WHERE code = ("
        " SELECT t ->> 'code' FROM incidents i, jsonb_array_elements(i.teams) t"
        f" WHERE i.{OPEN} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1)"
    )


def _chief_moves(conn: Any) -> None:
    """Every chief's feature moves about 1 km east."""
    conn.execute("UPDATE chiefs SET geom = ST_Translate(geom, 0.01, 0.0)")


CHANGES: dict[str, Callable[[Any], None]] = {
    "boundary_strip": _strip,
    "grid_chiefs": _grid_chiefs,
    "police_shrink": _police_shrink,
    "team_off_duty": _team_off_duty,
    "chief_moves": _chief_moves,
}


@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_incremental_finds_what_a_full_pass_finds(conn, client, catalogue, kind):
    assert _report_many(client) >= 30
    base = reroute(conn, catalogue, now=NOW, full=True)
    assert base.mode == "full" and base.changed == 0, base.examples
    assert changes.pending(conn).ids == []  # consumed by the recorded run

    CHANGES[kind](conn)
    pend = changes.pending(conn)
    assert pend.ids and pend.by_layer, "the change was logged"
    part = reroute(conn, catalogue, now=NOW, dry_run=True)
    whole = reroute(conn, catalogue, now=NOW, dry_run=True, full=True)
    assert part.mode == "incremental" and whole.mode == "full"
    assert sorted(part.changed_codes) == sorted(whole.changed_codes)
    assert dict(part.by_change) == dict(whole.by_change)
    assert part.failed == whole.failed == 0
    if kind in ("boundary_strip", "grid_chiefs", "police_shrink", "team_off_duty"):
        assert part.changed >= 1, f"{kind} changed no routing: the test proves nothing"
    if kind != "team_off_duty":
        assert part.examined < whole.examined  # fewer cases decided

    done = reroute(conn, catalogue, now=NOW)
    assert done.mode == "incremental" and done.changed == part.changed
    assert changes.pending(conn).ids == []
    assert reroute(conn, catalogue, now=NOW, dry_run=True, full=True).changed == 0
    again = reroute(conn, catalogue, now=NOW)
    assert (again.mode, again.examined, again.why) == (
        "incremental", 0, "no layer changes since the last re-route",
    )  # fmt: skip


def test_a_case_in_a_coverage_gap_follows_a_grid_beyond_the_zone(conn, client, catalogue):
    """A case whose own grid is 3 km away (a gap in the coverage) takes a new grid 2.4 km away:
    beyond the reach of the change, found through the case's stored reach."""
    x, y = point_inside(TONGNAN, 9000.0, 0.5)
    pt = "ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), 4326)"
    conn.execute(
        f"DELETE FROM grids WHERE side = %(s)s AND ST_DWithin(geom::geography, {pt}::geography,"
        " 3000)",
        {"s": TONGNAN, "x": x, "y": y},
    )
    r = client.post("/api/v1/incidents", json={"lon": x, "lat": y, "category": "theft"})
    assert r.status_code == 201, r.text
    case = r.json()
    far = [c for c in case["contacts"] if c["role"] == "grid_chief"]
    assert far and far[0]["distance_m"] > 3000
    reroute(conn, catalogue, now=NOW, full=True)

    village = conn.execute(
        f"SELECT code FROM areas WHERE level = 'village' AND left(code, 6) = %(s)s"
        f" ORDER BY geom <-> {pt} LIMIT 1",
        {"s": TONGNAN, "x": x, "y": y},
    ).fetchone()["code"]
    conn.execute(
        "INSERT INTO grids (code, name, village_code, side, chief_name, geom) VALUES"
        " (%(code)s, 'gap grid', %(v)s, %(s)s, 'Gap Chief', ST_Multi(ST_Transform(ST_Buffer("
        f"ST_Translate(ST_Transform({pt}, 4544), 2500, 0), 100, 'quad_segs=1'), 4326)))",
        {"code": village + "999", "v": village, "s": TONGNAN, "x": x, "y": y},
    )
    part = reroute(conn, catalogue, now=NOW, dry_run=True)
    whole = reroute(conn, catalogue, now=NOW, dry_run=True, full=True)
    assert part.mode == "incremental"
    assert case["code"] in part.changed_codes
    assert sorted(part.changed_codes) == sorted(whole.changed_codes)


def test_the_log_keeps_what_changed(conn):
    """A moved feature is logged with both geometries and as moved only (its part that moved
    is what the re-route measures from), even when an import stamps ``updated_at``; a row
    written unchanged is not logged; new attributes are."""
    conn.execute("DELETE FROM layer_changes")
    code = conn.execute("SELECT code FROM grids ORDER BY code LIMIT 1").fetchone()["code"]
    conn.execute(
        "UPDATE grids SET geom = ST_Multi(ST_Translate(geom, 0.001, 0)), updated_at = now()"
        " WHERE code = %s",
        (code,),
    )
    conn.execute("UPDATE grids SET name = name WHERE code = %s", (code,))
    conn.execute("UPDATE grids SET chief_name = 'New Chief' WHERE code = %s", (code,))
    rows = conn.execute(
        "SELECT layer, code, attrs_changed, ST_Equals(old_geom, new_geom) AS same"
        " FROM layer_changes ORDER BY id"
    ).fetchall()
    assert [(r["layer"], r["code"], r["attrs_changed"], r["same"]) for r in rows] == [
        ("grids", code, False, False),
        ("grids", code, True, True),
    ]


def test_full_pass_when_no_run_or_another_catalogue(conn, client, catalogue, monkeypatch):
    _report_many(client)
    conn.execute("DELETE FROM reroute_runs")
    first = reroute(conn, catalogue, now=NOW, dry_run=True)
    assert (first.mode, first.why) == ("full", "no earlier re-route is recorded")
    reroute(conn, catalogue, now=NOW)
    wider = catalogue.model_copy(update={"border_zone_m": catalogue.border_zone_m + 1000})
    other = reroute(conn, wider, now=NOW, dry_run=True)
    assert (other.mode, other.why) == ("full", "the catalogue changed since the last re-route")
    assert other.changed >= 1  # a wider zone makes more cases cross-boundary
    monkeypatch.setattr("api.usecases.reroute.FULL_PASS_AFTER_CHANGES", 10)
    conn.execute("UPDATE grids SET chief_name = chief_name || '.'")  # a whole layer re-imported
    many = reroute(conn, catalogue, now=NOW, dry_run=True)
    assert many.mode == "full" and "a full pass is cheaper" in many.why
    conn.execute("TRUNCATE TABLE chiefs")
    emptied = reroute(conn, catalogue, now=NOW, dry_run=True)
    assert emptied.mode == "full" and "TRUNCATE" in emptied.why


def test_routing_reach_marks_cases_that_look_far(conn, client):
    _report_many(client)
    rows = conn.execute(
        "SELECT input ? 'parties_sides' AS parties, cross_boundary,"
        " routing_reach(contacts, extent, input, distance_to_border_m) AS reach"
        # only this test's cases (reported in its transaction): other tests commit cases too
        f" FROM incidents WHERE {OPEN} AND reported_at >= now()"
    ).fetchall()
    assert len(rows) >= 30 and any(r["parties"] for r in rows)
    for r in rows:
        if r["parties"]:
            assert r["reach"] == float("inf")
        elif not r["cross_boundary"]:
            assert r["reach"] == 0.0  # inside its own grid and police grid
    plan = conn.execute(
        "EXPLAIN SELECT id FROM incidents WHERE status IN ('reported', 'accepted',"
        " 'dispatched', 'in_progress', 'resolved') AND routing_reach(contacts, extent, input,"
        " distance_to_border_m) > 2500"
    ).fetchall()
    assert "incidents_reach_idx" in " ".join(str(next(iter(p.values()))) for p in plan)


def test_one_reroute_at_a_time(conn, db_url, catalogue):
    from layers.db import connect

    with connect(db_url) as other:
        other.autocommit = True
        assert changes.lock(other)
        try:
            with pytest.raises(Conflict, match="another re-route is running"):
                reroute(conn, catalogue, now=NOW, dry_run=True)
        finally:
            changes.unlock(other)
