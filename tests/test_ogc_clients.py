"""The feed read by real clients against a real uvicorn (``live_server``): GDAL's OAPIF driver
(through pyogrio), OWSLib, the ogctests Core suite and schemathesis over our OpenAPI document.
Nothing here needs the internet.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
import shapely
from hypothesis import HealthCheck, Phase, settings

from tests.test_ogc import db, feed_incidents  # noqa: F401  (fixtures)

pyogrio = pytest.importorskip("pyogrio")
schemathesis = pytest.importorskip("schemathesis")


def published_wkb(
    conn: psycopg.Connection[Any], cid: str, sensitive: list[str]
) -> dict[str, bytes]:
    """id -> WKB of each feature's published geometry, straight from the database."""
    from layers.registry import REGISTRY

    spec = REGISTRY[cid]
    geom = f't."{spec.geometry_column}"'
    if cid == "incidents":
        geom = (
            "CASE WHEN t.category = ANY(%(s)s) THEN coalesce("
            "(SELECT ST_Centroid(g.geom) FROM grids g WHERE g.code = t.grid_code),"
            " ST_MakePoint(floor(ST_X(t.geom) / 0.01) * 0.01 + 0.005, floor(ST_Y(t.geom) / 0.01) * 0.01 + 0.005))"
            " ELSE t.geom END"
        )
    rows = conn.execute(
        f'SELECT t."{spec.id_column}"::text AS k, ST_AsBinary({geom}) AS g FROM "{spec.table}" t',
        {"s": sensitive},
    )
    return {r["k"]: bytes(r["g"]) for r in rows}


def test_gdal_lists_and_reads_every_collection_fully(live_server, db, feed_incidents, catalogue):  # noqa: F811
    from layers.registry import REGISTRY, keyed

    src = f"OAPIF:{live_server}/ogc"
    layers = {name for name, _ in pyogrio.list_layers(src)}
    assert layers == set(REGISTRY) - keyed()  # live positions are never shown anonymously
    sensitive = sorted(catalogue.sensitive_categories)
    for cid, spec in REGISTRY.items():
        if cid in keyed():
            assert httpx.get(f"{live_server}/ogc/collections/{cid}/items").status_code == 401
            continue
        matched = httpx.get(
            f"{live_server}/ogc/collections/{cid}/items", params={"limit": 1}
        ).json()["numberMatched"]
        df = pyogrio.read_dataframe(src, layer=cid)
        assert len(df) == matched, cid
        key = spec.id_column
        assert df[key].is_unique, cid
        expected = published_wkb(db, cid, sensitive)
        assert set(df[key].astype(str)) == set(expected), cid
        got = dict(zip(df[key].astype(str), df.geometry.values, strict=True))
        worst = 0.0
        for k, wkb in expected.items():
            a = shapely.get_coordinates(shapely.from_wkb(wkb))
            b = shapely.get_coordinates(got[k])
            assert a.shape == b.shape, (cid, k)
            worst = max(worst, float(np.abs(a - b).max()))
        assert worst < 1e-7, (cid, worst)
        assert not set(df.columns) & set(spec.private), cid


def test_gdal_pushes_filters_to_the_server(live_server, db, feed_incidents):  # noqa: F811
    src = f"OAPIF:{live_server}/ogc"
    df = pyogrio.read_dataframe(src, layer="incidents", where="status = 'reported'")
    expected = db.execute(
        "SELECT count(*) AS n FROM incidents WHERE status = 'reported'"
    ).fetchone()["n"]
    assert len(df) == expected > 0
    bbox = (105.5, 30.1, 105.7, 30.3)
    df = pyogrio.read_dataframe(src, layer="grids", bbox=bbox)
    n = db.execute(
        "SELECT count(*) AS n FROM grids WHERE ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326))",
        bbox,
    ).fetchone()["n"]
    assert len(df) == n > 0


def test_owslib_reads_collections_and_items_with_bbox(live_server, db, feed_incidents):  # noqa: F811
    from owslib.ogcapi.features import Features

    api = Features(f"{live_server}/ogc")
    conf = api.conformance()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conf
    ids = {c["id"] for c in api.collections()["collections"]}
    assert {"areas", "border", "grids", "police_grids", "teams", "incidents"} <= ids
    assert api.collection("grids")["id"] == "grids"
    assert "properties" in api.collection_queryables("incidents")
    bbox = [105.55, 30.15, 105.65, 30.25]
    fc = api.collection_items("grids", bbox=bbox, limit=1000)
    n = db.execute(
        "SELECT count(*) AS n FROM grids WHERE ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326))",
        bbox,
    ).fetchone()["n"]
    assert fc["numberMatched"] == fc["numberReturned"] == len(fc["features"]) == n > 0
    box = shapely.box(*bbox)
    assert all(
        shapely.intersects(shapely.geometry.shape(f["geometry"]), box) for f in fc["features"]
    )
    fc = api.collection_items("incidents", limit=5, filter="status = 'reported'")
    assert fc["features"] and all(f["properties"]["status"] == "reported" for f in fc["features"])
    code = db.execute("SELECT min(code) AS c FROM grids").fetchone()["c"]
    assert api.collection_item("grids", code)["id"] == code


def test_ogctests_core_suite_passes(live_server, feed_incidents, tmp_path):  # noqa: F811
    import ogctests

    suite = Path(ogctests.__file__).parent / "features" / "core"
    env = {**os.environ, "INSTANCE_URL": f"{live_server}/ogc"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(suite),
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            os.devnull,
            "--rootdir",
            str(tmp_path),
            f"--junitxml={tmp_path / 'ogctests.xml'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout


@pytest.fixture(scope="module")
def ogc_schema(live_server: str) -> Any:
    return schemathesis.openapi.from_url(f"{live_server}/ogc/api")


schema = schemathesis.pytest.from_fixture("ogc_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
def test_schemathesis_finds_no_server_error_or_broken_response(case: Any) -> None:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
