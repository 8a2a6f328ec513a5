"""Scale: the distribution column, routable hot queries, and the synthetic province (small).

Province-size data is for the benchmarks (``make bench``); here a 2 x 2-district province is
built, loaded into the rolled-back test transaction and checked.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from boundary_data import province as prov
from layers import incidents
from tests.geo import ANJU, ROOT, point_inside

LARGE_TABLES = (
    "areas",
    "grids",
    "police_grids",
    "teams",
    "chiefs",
    "incidents",
    "incident_events",
    "members",
    "devices",
    "positions",
    "device_latest",
    "patrol_sessions",
    "coverage_cells",
    "coverage_cell_parts",
    "patrol_marks",
    "patrol_backlog",
    "positions_dropped",
    "team_latest",
    "side_parts",
    "media",
)
# Large, with a side that may be NULL: rows about no single case have none. On a sharded
# cluster they stay on the coordinator (docs/scaling.md, "Tables added since the plan").
LARGE_SIDE_OPTIONAL = ("outbox",)
# Grow with the cases but carry no side yet: named in docs/scaling.md as the work left.
LARGE_WITHOUT_SIDE = ("audit_checkpoint_heads",)
# Small, or one row per key, subscription, checkpoint or run: reference tables on Citus.
SMALL_TABLES = (
    "api_keys",
    "audit_checkpoints",
    "border",
    "coverage_state",
    "layer_changes",
    "notify_channels",
    "notify_rules",
    "reroute_runs",
    "schema_migrations",
    "sessions",
    "spatial_ref_sys",
    "webhook_subscriptions",
)


def test_large_tables_carry_the_side(conn):
    rows = conn.execute(
        "SELECT table_name, is_nullable FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND column_name = 'side'"
    ).fetchall()
    have = {r["table_name"]: r["is_nullable"] for r in rows}
    for t in LARGE_TABLES:
        assert have.get(t) == "NO", f"{t} must carry a NOT NULL side (distribution column)"
    for t in LARGE_SIDE_OPTIONAL:
        assert t in have, f"{t} must carry a side (distribution column)"


def test_every_table_is_classified_for_sharding(conn):
    """A new table is placed in the plan (docs/scaling.md) when it is added: large and
    distributed by side, or small and replicated. A table of neither list fails here."""
    rows = conn.execute(
        "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
    ).fetchall()
    known = {*LARGE_TABLES, *LARGE_SIDE_OPTIONAL, *LARGE_WITHOUT_SIDE, *SMALL_TABLES}
    unknown = sorted({r["name"] for r in rows} - known)
    assert not unknown, (
        f"tables not in the sharding plan: {unknown}. Add each to LARGE_TABLES (with a NOT NULL"
        " side) or SMALL_TABLES here, and to docs/scaling.md"
    )


class _Recorder:
    """A connection that records every statement the storage layer sends."""

    def __init__(self, conn: Any) -> None:
        self._conn, self.sent = conn, []

    def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
        self.sent.append((query, params))
        return self._conn.execute(query, params, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _plan_conditions(conn, query: Any, params: Any) -> str:  # type: ignore[no-untyped-def]
    """Every filter and index condition of the statement's plan, as one text."""
    if not isinstance(query, str):
        query = query.as_string(conn)
    plan = conn.execute("EXPLAIN (FORMAT JSON, VERBOSE) " + query, params).fetchone()
    doc = next(iter(plan.values()))
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("Filter", "Index Cond", "Recheck Cond", "Join Filter") and isinstance(
                    v, str
                ):
                    found.append(v)
                walk(v)
        elif isinstance(node, list):
            for x in node:
                walk(x)

    walk(doc)
    return " AND ".join(found)


def _routed(cond: str, side: str) -> bool:
    return re.search(r"\bside = '" + side + r"'", cond) is not None


@pytest.fixture()
def case(client):  # type: ignore[no-untyped-def]
    x, y = point_inside(ANJU, 800.0, 0.5)
    r = client.post("/api/v1/incidents", json={"lon": x, "lat": y, "category": "theft"})
    assert r.status_code == 201, r.text
    return r.json()


def test_new_case_ids_name_their_intake_side(case):
    assert incidents.side_of_id(case["id"]) == ANJU
    assert incidents.side_of_id("JG20261127-000001") is None
    assert incidents.side_of_id("5b0f6a52-3c1e-4f7e-9b7a-2f1d0c9e8a11") is None


def test_hot_case_queries_can_be_routed_by_side(conn, case):
    """By id, its events and a transition's update each carry `side = <the case's side>` in
    their plan: a sharded PostgreSQL sends them to one shard. Listing by side is the one
    query that fans out (a cross-boundary case lives on its intake side's shard only)."""
    rec = _Recorder(conn)
    incidents.get(rec, case["id"])  # type: ignore[arg-type]
    incidents.events(rec, case["id"])  # type: ignore[arg-type]
    incidents.update_state(rec, case["id"], changes={"escalation_level": 0})  # type: ignore[arg-type]
    assert len(rec.sent) == 3
    for query, params in rec.sent:
        cond = _plan_conditions(conn, query, params)
        assert _routed(cond, ANJU), f"not routable by side: {cond}"
    # a code (no side in it) is looked up everywhere: the plan has no side condition
    rec.sent.clear()
    incidents.get(rec, case["code"])  # type: ignore[arg-type]
    assert not _routed(_plan_conditions(conn, *rec.sent[-1]), ANJU)
    # the side-scoped list names the side, but matches it among every involved side
    rec.sent.clear()
    incidents.list_cases(rec, filters={"side": [ANJU]}, bbox=None, limit=10, after=None)  # type: ignore[arg-type]
    cond = _plan_conditions(conn, *rec.sent[-1])
    assert "sides &&" in cond and not _routed(cond, ANJU)


def _real_sides() -> Any:
    fc = json.loads((ROOT / "boundary_data" / "districts.geojson").read_text())
    return shapely.union_all([shape(f["geometry"]) for f in fc["features"]])


SMALL = prov.ProvinceSpec(districts_x=2, districts_y=2, teams=6, centre=(106.6, 30.2))


def test_province_generator_is_deterministic_and_nests():
    real = _real_sides()
    a, b = prov.build(SMALL, real), prov.build(SMALL, real)
    assert a.grids.code.tolist() == b.grids.code.tolist()
    assert shapely.equals(a.grids.geom, b.grids.geom).all()
    assert len(a.districts) == 4 and all(c.startswith("99") for c in a.districts.code)
    for layer in (a.districts, a.towns, a.villages, a.grids, a.police):
        assert shapely.is_valid(layer.geom).all()
        assert len(set(layer.code.tolist())) == len(layer)
    assert all(re.fullmatch(r"99[0-9]{13}", c) for c in a.grids.code.tolist())
    area = {
        k: shapely.area(getattr(a, k).geom).sum()
        for k in ("districts", "towns", "villages", "grids", "police")
    }
    assert max(area.values()) - min(area.values()) < 1e-9 * area["districts"]
    tree = shapely.STRtree(a.villages.geom)
    gi, vi = tree.query(shapely.point_on_surface(a.grids.geom), predicate="within")
    assert len(gi) == len(a.grids)
    assert (a.villages.code[vi] == np.asarray(a.grids.cols["village"])[gi]).all()
    # far from the real districts: their border zones and decisions stay as they are
    assert shapely.distance(real, shapely.union_all(a.districts.geom)) > SMALL.gap_deg * 0.99
    assert len(a.teams) == 6 and all(len(t["sides"]) == 2 for t in a.teams)


def test_province_loads_with_copy_and_routes_like_the_single_path(conn, catalogue):
    from api.usecases.reroute import bulk_decisions
    from gis.routing import Report, contacts_digest, decide, signature
    from layers import locate
    from layers.demo import load_cases, load_province_layers

    real = _real_sides()
    p = prov.build(SMALL, real)
    counts = load_province_layers(conn, p)
    assert counts["grids"] == len(p.grids) and counts["teams"] == 6
    n = conn.execute("SELECT count(*) AS n FROM side_parts WHERE side LIKE '99%%'").fetchone()["n"]
    assert n >= 4  # kept in step with areas by the trigger
    c = prov.cases(
        400,
        n_open=150,
        cell_bounds=p.cell_bounds,
        real_sides=real,
        real_share=0.05,
        end_epoch=datetime(2026, 11, 27, tzinfo=UTC).timestamp(),
        seed=3,
    )
    routing = bulk_decisions(conn, c, catalogue=catalogue)
    # in chunks (the loader's memory bound) the columns are those of one statement for all
    import api.usecases.reroute as rr

    whole, rr.BULK_CHUNK = rr.BULK_CHUNK, 37
    try:
        chunked = bulk_decisions(conn, c, catalogue=catalogue)
    finally:
        rr.BULK_CHUNK = whole
    assert len(c) > 2 * 37
    for k in ("side", "sides", "mechanism", "grid_code", "police_grid_code", "teams", "contacts",
              "distance_to_border_m", "routing_sig"):  # fmt: skip
        assert chunked[k] == routing[k], k
    out = load_cases(conn, c, routing, catalogue=catalogue, say=lambda _m: None)
    assert out["cases"] == 400 and out["events"] >= 400
    bad = conn.execute(
        "SELECT count(*) AS n FROM incident_events e JOIN incidents i ON i.id = e.incident_id"
        " WHERE i.input->>'synthetic' = 'province'"
        " AND e.hash IS DISTINCT FROM incident_event_digest(e.prev_hash, e)"
    ).fetchone()["n"]
    assert bad == 0  # the set-wise chain equals what the trigger writes
    opened = conn.execute(
        "SELECT count(*) AS n FROM incidents WHERE input->>'synthetic' = 'province'"
        " AND status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved')"
    ).fetchone()["n"]
    assert opened == 150
    # points in the synthetic districts, near their lines: batch and single facts agree
    rng = np.random.default_rng(5)
    b = p.cell_bounds[rng.integers(0, len(p.cell_bounds), 60)]
    xs = b[:, 0] + (b[:, 2] - b[:, 0]) * rng.random(60)
    ys = b[:, 1] + (b[:, 3] - b[:, 1]) * rng.random(60)
    mech = [catalogue.mechanism_for("theft")] * 60
    many = locate.facts_of_points(conn, xs, ys, radius_m=catalogue.border_zone_m, mechanism=mech)
    now = datetime(2026, 11, 27, 3, tzinfo=UTC)
    for i in range(60):
        rep = Report(float(xs[i]), float(ys[i]), "theft", "yellow", now)
        one = locate.facts(
            conn,
            lon=float(xs[i]),
            lat=float(ys[i]),
            radius_m=catalogue.border_zone_m,
            mechanism=mech[i],
            teams_if_cross=True,
        )
        batch = locate.to_facts(float(xs[i]), float(ys[i]), many.docs[many.keys[i]])
        assert batch == one  # one engine: an array of one is a point of many
        assert signature(decide(rep, one, catalogue, now=now)) == signature(
            decide(rep, batch, catalogue, now=now)
        )
    # the stored routing of the loaded open cases is the decision's, signature and all
    stored = conn.execute(
        "SELECT routing_sig, mechanism, sides, teams, contacts FROM incidents"
        " WHERE input->>'synthetic' = 'province' AND jointgrid_is_open(status)"
    ).fetchall()
    for row in stored:
        mech_s, sides, teams, digest = row["routing_sig"].split("\x1d")
        assert (mech_s or None, sides.split(",")) == (row["mechanism"], row["sides"])
        assert teams == ",".join(t["code"] for t in row["teams"])
        keys = [(c["side"], c["role"], c["unit_code"], c["name"] or "") for c in row["contacts"]]
        assert digest == contacts_digest(keys)
