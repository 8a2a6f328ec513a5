"""Importing boundary files: bad rows reported by number, all-or-nothing, idempotent, repaired."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Polygon, box, mapping

from api.usecases.loading import load_file
from gis.crs import from_wgs84
from gis.errors import ImportRejected, InvalidInput

ROOT = Path(__file__).resolve().parents[1]


def village(conn) -> dict:  # type: ignore[type-arg]
    return conn.execute(
        "SELECT code, side, ST_XMin(geom) AS x, ST_YMin(geom) AS y FROM areas"
        " WHERE level = 'village' ORDER BY code LIMIT 1"
    ).fetchone()


def grid_feature(code: str, village_code: str, geom, **props) -> dict:  # type: ignore[no-untyped-def]
    return {
        "type": "Feature",
        "properties": {"code": code, "name": f"Test grid {code}", "village": village_code, **props},
        "geometry": None if geom is None else mapping(geom),
    }


def write(tmp_path: Path, features: list[dict], name: str = "grids.geojson") -> Path:  # type: ignore[type-arg]
    p = tmp_path / name
    p.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return p


def good_rows(v: dict, n: int = 3) -> list[dict]:  # type: ignore[type-arg]
    x, y = v["x"], v["y"]
    return [
        grid_feature(
            f"{v['code']}9{i:02d}", v["code"], box(x + i * 0.001, y, x + (i + 1) * 0.001, y + 0.001)
        )
        for i in range(n)
    ]


def count(conn, prefix: str) -> int:  # type: ignore[no-untyped-def]
    return conn.execute(
        "SELECT count(*) AS n FROM grids WHERE code LIKE %s", (prefix + "9%",)
    ).fetchone()["n"]


def test_bad_rows_are_reported_by_number_and_nothing_is_loaded(conn, tmp_path, catalogue):
    v = village(conn)
    x, y = v["x"], v["y"]
    other = "500152" if v["side"] == "510904" else "510904"
    rows = [
        *good_rows(v, 2),
        grid_feature("", v["code"], box(x, y, x + 0.001, y + 0.001)),  # row 3: missing code
        grid_feature(
            f"{v['code']}950", "999999999999", box(x, y, x + 0.001, y + 0.001)
        ),  # 4: unknown parent
        grid_feature(f"{v['code']}951", v["code"], None),  # 5: empty geometry
        {
            **grid_feature(f"{v['code']}952", v["code"], None),
            "geometry": {"type": "Point", "coordinates": [x, y]},
        },  # 6: not a polygon
        {
            **grid_feature(f"{v['code']}953", v["code"], None),
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[500000, 3300000], [500100, 3300000], [500100, 3300100], [500000, 3300000]]
                ],
            },
        },  # 7: projected
        grid_feature(
            f"{v['code']}954", v["code"], box(x, y, x + 0.001, y + 0.001), side=other
        ),  # 8: wrong side
    ]
    path = write(tmp_path, rows)
    with pytest.raises(ImportRejected) as exc:
        load_file(conn, path, layer="grids", catalogue=catalogue)
    rejected = {r["row"]: r["reason"] for r in exc.value.detail["rejected"]}
    assert sorted(rejected) == [3, 4, 5, 6, 7, 8]
    assert "missing code" in rejected[3]
    assert "unknown parent" in rejected[4]
    assert "empty" in rejected[5]
    assert "Point" in rejected[6]
    assert "out of range" in rejected[7]
    assert "does not match" in rejected[8] or "side" in rejected[8]
    assert count(conn, v["code"]) == 0  # all or nothing


def test_skip_invalid_loads_the_good_rows_and_reports_the_rest(conn, tmp_path, catalogue):
    v = village(conn)
    rows = [*good_rows(v, 3), grid_feature(f"{v['code']}960", "999999999999", box(0, 0, 1, 1))]
    report = load_file(
        conn, write(tmp_path, rows), layer="grids", catalogue=catalogue, skip_invalid=True
    )
    assert report.loaded == 3 and report.counts["inserted"] == 3
    assert [r["row"] for r in report.rejected] == [4]
    assert count(conn, v["code"]) == 3


def test_wrong_side_for_the_load(conn, tmp_path, catalogue):
    v = village(conn)
    other = "500152" if v["side"] == "510904" else "510904"
    with pytest.raises(ImportRejected) as exc:
        load_file(
            conn, write(tmp_path, good_rows(v, 2)), layer="grids", side=other, catalogue=catalogue
        )
    assert all("wrong side" in r["reason"] for r in exc.value.detail["rejected"])


def test_reloading_the_same_file_changes_nothing(conn, tmp_path, catalogue):
    v = village(conn)
    path = write(tmp_path, good_rows(v, 3))
    first = load_file(conn, path, layer="grids", catalogue=catalogue)
    stamp = conn.execute(
        "SELECT max(updated_at) AS t FROM grids WHERE code LIKE %s", (v["code"] + "9%",)
    ).fetchone()["t"]
    second = load_file(conn, path, layer="grids", catalogue=catalogue)
    assert first.counts == {"inserted": 3, "updated": 0, "unchanged": 0}
    assert second.counts == {"inserted": 0, "updated": 0, "unchanged": 3}
    assert (
        conn.execute(
            "SELECT max(updated_at) AS t FROM grids WHERE code LIKE %s", (v["code"] + "9%",)
        ).fetchone()["t"]
        == stamp
    )
    rows = good_rows(v, 3)
    rows[1]["properties"]["name"] = "renamed"
    third = load_file(conn, write(tmp_path, rows), layer="grids", catalogue=catalogue)
    assert third.counts == {"inserted": 0, "updated": 1, "unchanged": 2}


def test_the_seed_is_idempotent(conn, catalogue):
    from api import settings
    from api.usecases.loading import seed

    reports = seed(conn, settings.data().boundary_dir, catalogue=catalogue)
    assert all(r.counts["inserted"] == 0 and r.counts["updated"] == 0 for r in reports)
    assert sum(r.counts["unchanged"] for r in reports) > 3000


def test_invalid_geometry_is_repaired_and_reported(conn, tmp_path, catalogue):
    v = village(conn)
    x, y = v["x"], v["y"]
    bowtie = Polygon([(x, y), (x + 0.001, y + 0.001), (x + 0.001, y), (x, y + 0.001), (x, y)])
    report = load_file(
        conn,
        write(tmp_path, [grid_feature(f"{v['code']}970", v["code"], bowtie)]),
        layer="grids",
        catalogue=catalogue,
    )
    assert report.loaded == 1
    assert report.repaired and "Self-intersection" in report.repaired[0]["repair"]
    assert report.repaired[0]["row"] == 1
    valid = conn.execute(
        "SELECT ST_IsValid(geom) AS ok, GeometryType(geom) AS t FROM grids WHERE code = %s",
        (f"{v['code']}970",),
    ).fetchone()
    assert valid["ok"] and valid["t"] == "MULTIPOLYGON"


@pytest.mark.parametrize("driver,suffix", [("ESRI Shapefile", ".shp"), ("GPKG", ".gpkg")])
def test_shapefile_and_geopackage(conn, tmp_path, catalogue, driver, suffix):
    v = village(conn)
    feats = good_rows(v, 2)
    gdf = gpd.GeoDataFrame.from_features(feats, crs="EPSG:4326")
    path = tmp_path / f"grids{suffix}"
    gdf.to_file(path, driver=driver)
    report = load_file(conn, path, layer="grids", catalogue=catalogue)
    assert report.counts["inserted"] == 2


def test_gcj02_files_are_converted(conn, tmp_path, catalogue):
    v = village(conn)
    x, y = v["x"] + 0.01, v["y"] + 0.01
    sq = box(x, y, x + 0.002, y + 0.002)
    gx, gy = from_wgs84(x, y, "gcj02")
    shifted = box(gx, gy, gx + 0.002, gy + 0.002)  # roughly the same square in GCJ-02 numbers
    load_file(
        conn,
        write(tmp_path, [grid_feature(f"{v['code']}980", v["code"], shifted)]),
        layer="grids",
        crs="gcj02",
        catalogue=catalogue,
    )
    got = conn.execute(
        "SELECT ST_XMin(geom) AS x, ST_YMin(geom) AS y FROM grids WHERE code = %s",
        (f"{v['code']}980",),
    ).fetchone()
    assert got["x"] == pytest.approx(sq.bounds[0], abs=2e-5)
    assert got["y"] == pytest.approx(sq.bounds[1], abs=2e-5)


def test_unknown_layer_and_missing_file(conn, tmp_path, catalogue):
    with pytest.raises(InvalidInput) as exc:
        load_file(conn, tmp_path / "x.geojson", layer="border", catalogue=catalogue)
    assert "grids" in exc.value.detail["importable"]
    with pytest.raises(InvalidInput):
        load_file(conn, tmp_path / "missing.geojson", layer="grids", catalogue=catalogue)
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(InvalidInput) as exc:
        load_file(conn, bad, layer="grids", catalogue=catalogue)
    assert "cannot read" in exc.value.message


def test_cli_reports_bad_rows_without_a_traceback(db_url, conn, tmp_path):
    v = village(conn)
    rows = [*good_rows(v, 1), grid_feature("", v["code"], box(0, 0, 1, 1))]
    path = write(tmp_path, rows)
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "load", str(path), "--layer", "grids"],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 2
    assert "row 2" in out.stderr and "missing code" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
