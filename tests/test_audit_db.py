"""The coverage audit on the stored layers: the demo is clean but for its deliberate mismatches,
and each defect seeded into the database is found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.usecases.loading import audit

ROOT = Path(__file__).resolve().parents[1]


def deliberate() -> set[str]:
    meta = json.loads((ROOT / "boundary_data" / "police_grids.geojson").read_text())["metadata"]
    return set(meta["deliberate_police_mismatches"])


def kinds(report) -> dict[str, list]:  # type: ignore[no-untyped-def, type-arg]
    """Only the kinds that have findings."""
    return {k: v for k, v in report.by_kind().items() if v}


def test_the_demo_audits_clean_but_for_the_deliberate_police_mismatches(conn):
    report = audit(conn)
    by = kinds(report)
    assert set(by) == {"grid_split_police"}
    assert {f.codes[0] for f in by["grid_split_police"]} == deliberate()
    for f in by["grid_split_police"]:
        shares = f.detail["shares"]
        assert len(shares) == 2 and sum(shares.values()) == pytest.approx(1.0, abs=0.01)


def grid_near_border(conn) -> dict:  # type: ignore[type-arg]
    return conn.execute(
        "SELECT g.code, g.village_code, ST_Area(ST_Transform(g.geom, 4544)) AS area FROM grids g"
        " WHERE NOT g.joint AND ST_DWithin(g.geom, (SELECT geom FROM border WHERE kind = 'line'), 0.01)"
        " ORDER BY g.code LIMIT 1"
    ).fetchone()


def test_a_deleted_grid_leaves_a_gap_of_its_area(conn):
    g = grid_near_border(conn)
    conn.execute("DELETE FROM grids WHERE code = %s", (g["code"],))
    gaps = kinds(audit(conn)).get("gap", [])
    assert len(gaps) == 1
    assert gaps[0].codes == (g["village_code"],)
    assert gaps[0].area_m2 == pytest.approx(g["area"], rel=0.01)


def test_an_enlarged_grid_overlaps_its_neighbours_and_leaves_its_village(conn):
    g = grid_near_border(conn)
    conn.execute(
        "UPDATE grids SET geom = ST_Multi(ST_Intersection(ST_Transform(ST_Buffer(ST_Transform(geom, 4544), 800), 4326),"
        " (SELECT geom FROM areas WHERE code = grids.side))) WHERE code = %s",
        (g["code"],),
    )
    by = kinds(audit(conn))
    assert any(g["code"] in f.codes for f in by["overlap"])
    outside = [f for f in by["grid_outside_village"] if f.codes[0] == g["code"]]
    assert outside and outside[0].area_m2 > 1000


def test_a_police_grid_pushed_across_the_line(conn):
    p = conn.execute(
        "SELECT code, side FROM police_grids WHERE ST_DWithin(geom,"
        " (SELECT geom FROM border WHERE kind = 'line'), 0.001) ORDER BY code LIMIT 1"
    ).fetchone()
    conn.execute(
        "UPDATE police_grids SET geom = ST_Multi(ST_Transform(ST_Buffer(ST_Transform(geom, 4544), 300), 4326))"
        " WHERE code = %s",
        (p["code"],),
    )
    crossing = kinds(audit(conn))["police_crosses_side"]
    assert [f.codes[0] for f in crossing] == [p["code"]]
    assert crossing[0].area_m2 > 10_000


def test_cli_audit_geojson(db_url):
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "audit", "--format", "geojson"],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    fc = json.loads(out.stdout)
    assert fc["type"] == "FeatureCollection"
    assert {f["properties"]["kind"] for f in fc["features"]} == {"grid_split_police"}
    x, y = (
        fc["features"][0]["geometry"]["coordinates"][0][0][:2]
        if fc["features"][0]["geometry"]["type"] == "Polygon"
        else fc["features"][0]["geometry"]["coordinates"][0][0][0][:2]
    )
    assert 105 < x < 106.2 and 29.8 < y < 30.6  # WGS84 degrees, not metres
