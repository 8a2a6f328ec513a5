"""The map, dashboard and report pages and their data endpoints, over HTTP (no browser).

Each test runs in a transaction that is rolled back (the ``client`` fixture).
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import folium
import pytest
from folium.plugins import HeatMap, MarkerCluster, Realtime

from api.pages import config, maplook
from gis.crs import from_wgs84
from layers import mapdata
from layers.registry import REGISTRY
from tests.geo import ANJU, TONGNAN, point_inside

WHOLE = "105.0,29.7,106.1,30.7"


def report(
    client: Any, lon: float, lat: float, category: str = "land_dispute", **extra: Any
) -> Any:
    r = client.post(
        "/api/v1/incidents", json={"lon": lon, "lat": lat, "category": category, **extra}
    )
    assert r.status_code == 201, r.text
    return r.json()


def near(a: float, b: float, tol: float = 1e-5) -> bool:
    return abs(a - b) <= tol


# -- the page and its assets ------------------------------------------------------------------


def test_every_library_folium_would_fetch_has_a_local_copy() -> None:
    wanted = [
        *folium.Map.default_js,
        *folium.Map.default_css,
        *HeatMap.default_js,
        *Realtime.default_js,
        *MarkerCluster.default_js,
        *MarkerCluster.default_css,
    ]
    for name, _ in wanted:
        assert name in config.FOLIUM_JS or name in config.FOLIUM_CSS or name in config.DROPPED_CSS
    for url in [*config.FOLIUM_JS.values(), *config.FOLIUM_CSS.values()]:
        assert url.startswith("/assets/")


def test_the_map_page_loads_only_files_of_this_server(client: Any) -> None:
    r = client.get("/map")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    urls = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert len(urls) >= 12
    urls = [u for u in urls if u != "data:,"]  # the empty favicon: no request
    assert not [u for u in urls if not u.startswith("/") or u.startswith("//")], urls
    assert "cdn" not in html.lower() and "https://" not in html.split("<body>")[0]
    # every one of them is served (the npm packages come from scripts/assets.sh)
    for u in urls:
        if u.startswith(("/assets/", "/static/")):
            got = client.get(u)
            assert got.status_code == 200, u
    for layer_id in REGISTRY:
        assert layer_id in {v.layer for v in mapdata.views()} or layer_id == "incidents"


def test_the_map_shows_base_tiles_only_when_configured(client: Any, monkeypatch: Any) -> None:
    assert "L.tileLayer" not in client.get("/map").text
    monkeypatch.setenv("JOINTGRID_TILES_URL", "http://127.0.0.1:9/tiles/{z}/{x}/{y}.png")
    monkeypatch.setenv("JOINTGRID_TILES_ATTRIBUTION", "local tiles")
    html = client.get("/map").text
    assert "L.tileLayer" in html and "127.0.0.1:9/tiles" in html and "local tiles" in html


def test_filters_and_layers_from_the_url_are_selected_in_the_page(client: Any) -> None:
    html = client.get(
        "/map?status=reported,accepted&mechanism=joint_defense&side=510904&window=7d"
        "&layers=grids,incidents,heat"
    ).text
    assert re.search(r'<option value="reported" selected>', html)
    assert re.search(r'<option value="joint_defense" selected>', html)
    assert re.search(r'<option value="510904" selected>', html)
    assert re.search(r'<option value="7d" selected>', html)
    bad = client.get("/map?status=lost")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_input"
    assert "reported" in bad.json()["detail"]["valid"]


# -- layer data -------------------------------------------------------------------------------


@pytest.mark.parametrize("view", [v.id for v in mapdata.views()])
def test_every_map_layer_is_geojson_built_by_the_database(client: Any, view: str) -> None:
    v = mapdata.view(view)
    r = client.get(
        f"/map/data/layers/{view}", params={"z": 14, "bbox": "105.55,30.20,105.75,30.35"}
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and fc["meta"]["view"] == view
    assert fc["features"], view
    allowed = set(v.spec.public)
    for f in fc["features"]:
        assert f["type"] == "Feature" and f["geometry"]["type"]
        assert set(f["properties"]) <= allowed  # never a private column (phones, members)
    if v.is_point:
        assert {f["geometry"]["type"] for f in fc["features"]} == {"Point"}


def test_big_layers_are_limited_to_the_box_and_simplified_by_zoom(client: Any) -> None:
    small = client.get(
        "/map/data/layers/grids", params={"z": 14, "bbox": "105.60,30.25,105.62,30.27"}
    )
    wide = client.get("/map/data/layers/grids", params={"z": 14, "bbox": WHOLE})
    assert 0 < len(small.json()["features"]) < len(wide.json()["features"]) / 20

    def vertices(z: int) -> int:
        fc = client.get("/map/data/layers/districts", params={"z": z}).json()
        return len(json.dumps([f["geometry"] for f in fc["features"]]))

    assert vertices(8) < vertices(12) < vertices(17)
    assert client.get("/map/data/layers/nowhere").status_code == 404


# -- incidents --------------------------------------------------------------------------------


def test_incidents_are_counted_in_cells_at_low_zoom_and_single_when_zoomed_in(
    client: Any, conn: Any
) -> None:
    made = [report(client, *point_inside(ANJU, 300, 0.30 + 0.001 * k)) for k in range(3)]
    lone = report(client, *point_inside(TONGNAN, 5000, 0.6), category="fire")
    low = client.get("/map/data/incidents", params={"z": 9, "bbox": WHOLE}).json()
    assert low["meta"]["mode"] == "cells"
    cells = low["features"]
    assert sum(c["properties"]["count"] for c in cells) >= 4
    counted = {}
    for c in cells:
        for m, n in c["properties"]["mechanisms"].items():
            counted[m] = counted.get(m, 0) + n
    assert counted.get("joint_mediation", 0) >= 3 and counted.get("none", 0) >= 1
    lon, lat = made[0]["location"]["coordinates"]
    box = f"{lon - 0.003},{lat - 0.003},{lon + 0.003},{lat + 0.003}"
    high = client.get("/map/data/incidents", params={"z": 16, "bbox": box}).json()
    assert high["meta"]["mode"] == "incidents"
    by_code = {f["properties"]["code"]: f["properties"] for f in high["features"]}
    p = by_code[made[0]["code"]]
    assert p["mechanism"] == "joint_mediation" and p["status"] == "reported"
    assert p["kind"] == "incident" and p["overdue"] is False and p["key"].startswith(made[0]["id"])
    assert lone["code"] not in by_code
    # too many for single markers: cells again, even zoomed in
    capped = mapdata.incidents_geojson(
        conn,
        bbox=(lon - 0.003, lat - 0.003, lon + 0.003, lat + 0.003),
        zoom=16,
        filters=mapdata.CaseFilter(),
        now=datetime.now(UTC),
        **{**maplook.incident_sizes(), "detail_max": 1},
    )
    assert json.loads(capped)["meta"]["mode"] == "cells"


def test_the_incident_filters(client: Any) -> None:
    a = report(client, *point_inside(ANJU, 300, 0.45), category="theft")
    b = report(client, *point_inside(TONGNAN, 4000, 0.45), category="fire")
    lon, lat = a["location"]["coordinates"]
    box = f"{lon - 0.2},{lat - 0.2},{lon + 0.2},{lat + 0.2}"

    def codes(**params: str) -> set[str]:
        fc = client.get("/map/data/incidents", params={"z": 18, "bbox": box, **params}).json()
        assert fc["meta"]["mode"] == "incidents"
        return {f["properties"]["code"] for f in fc["features"]}

    assert {a["code"], b["code"]} <= codes()
    assert a["code"] in codes(mechanism="joint_defense") and b["code"] not in codes(
        mechanism="joint_defense"
    )
    assert b["code"] in codes(mechanism="none") and a["code"] not in codes(mechanism="none")
    assert b["code"] in codes(side=TONGNAN) and a["code"] in codes(side=TONGNAN)  # a is shared
    assert a["code"] not in codes(side=ANJU, category="fire")
    assert a["code"] not in codes(status="closed") and a["code"] in codes(status="all")
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert a["code"] not in codes(since=future) and a["code"] in codes(window="24h")
    r = client.get("/map/data/incidents", params={"z": 10, "bbox": box, "category": "nope"})
    assert r.status_code == 422 and "theft" in r.json()["detail"]["valid"]
    assert client.get("/map/data/incidents", params={"z": 10}).status_code == 422


def test_overdue_and_escalated_cases_are_flagged(client: Any, conn: Any) -> None:
    case = report(client, *point_inside(ANJU, 300, 0.52), category="water_dispute")
    conn.execute(
        "UPDATE incidents SET due_at = now() - interval '2 hours', escalation_level = 1 WHERE id = %s",
        (case["id"],),
    )
    lon, lat = case["location"]["coordinates"]
    box = f"{lon - 0.002},{lat - 0.002},{lon + 0.002},{lat + 0.002}"
    fc = client.get("/map/data/incidents", params={"z": 17, "bbox": box}).json()
    p = next(f["properties"] for f in fc["features"] if f["properties"]["id"] == case["id"])
    assert p["overdue"] is True and p["escalation_level"] == 1
    cells = client.get("/map/data/incidents", params={"z": 11, "bbox": box}).json()["features"]
    assert sum(c["properties"]["overdue"] for c in cells) >= 1
    assert sum(c["properties"]["escalated"] for c in cells) >= 1


def test_the_popup_shows_routing_teams_contacts_due_time_and_the_audit_link(client: Any) -> None:
    case = report(client, *point_inside(ANJU, 300, 0.55), category="land_dispute")
    r = client.get(f"/map/popup/{case['id']}")
    assert r.status_code == 200
    html = r.text
    for text in (
        case["code"],
        "land_dispute",
        "joint_mediation",
        "联调",
        "黄色",
        "待受理",
        f"/api/v1/incidents/{case['id']}/events",
        f'href="/cases/{case["code"]}"',  # 办理: open the case page
        "分派依据",
    ):
        assert text in html, text
    for c in case["contacts"]:
        assert c["name"] in html
    lead = next(t for t in case["teams"] if t["lead"])
    assert lead["name"] in html and "牵头队伍" in html
    assert html.count('class="jg-side"') == 2  # both sides, lead first
    assert client.get(f"/map/popup/{case['code']}").status_code == 200
    assert client.get("/map/popup/JG00000000-000000").status_code == 404


def test_the_heat_map_counts_the_last_30_days(client: Any, conn: Any) -> None:
    case = report(client, *point_inside(ANJU, 300, 0.6))
    old = report(client, *point_inside(ANJU, 300, 0.61))
    conn.execute(
        "UPDATE incidents SET reported_at = now() - interval '40 days' WHERE id = %s", (old["id"],)
    )
    lon, lat = case["location"]["coordinates"]
    box = f"{lon - 0.01},{lat - 0.01},{lon + 0.01},{lat + 0.01}"
    data = client.get("/map/data/heat", params={"z": 17, "bbox": box}).json()
    assert data["meta"]["days"] == 30 and data["meta"]["max"] >= 1
    pts = data["points"]
    assert any(near(p[0], lat, 1e-4) and near(p[1], lon, 1e-4) for p in pts)
    olon, olat = old["location"]["coordinates"]
    assert not any(near(p[0], olat, 1e-5) and near(p[1], olon, 1e-5) for p in pts)


def test_gcj02_tiles_shift_our_layers_and_read_the_box_in_gcj02(
    client: Any, monkeypatch: Any
) -> None:
    case = report(client, *point_inside(ANJU, 300, 0.65))
    lon, lat = case["location"]["coordinates"]
    box = f"{lon - 0.002},{lat - 0.002},{lon + 0.002},{lat + 0.002}"
    plain = client.get("/map/data/layers/districts", params={"z": 12}).json()
    monkeypatch.setenv("JOINTGRID_TILES_CRS", "gcj02")
    shifted = client.get("/map/data/layers/districts", params={"z": 12}).json()
    assert shifted["meta"]["crs"] == "gcj02"
    a = plain["features"][0]["geometry"]["coordinates"][0][0][0]
    b = shifted["features"][0]["geometry"]["coordinates"][0][0][0]
    gx, gy = from_wgs84(a[0], a[1], "gcj02")
    assert near(b[0], gx, 2e-4) and near(b[1], gy, 2e-4) and not near(a[0], b[0], 1e-3)
    # the browser sends its box in GCJ-02 and gets the case back, shifted
    glon, glat = from_wgs84(lon, lat, "gcj02")
    gbox = f"{glon - 0.002},{glat - 0.002},{glon + 0.002},{glat + 0.002}"
    fc = client.get("/map/data/incidents", params={"z": 17, "bbox": gbox}).json()
    f = next(f for f in fc["features"] if f["properties"]["id"] == case["id"])
    x, y = f["geometry"]["coordinates"]
    assert near(x, glon, 2e-6) and near(y, glat, 2e-6)
    assert client.get("/map/data/incidents", params={"z": 11, "bbox": box}).status_code == 200
    heat = client.get("/map/data/heat", params={"z": 17, "bbox": gbox}).json()
    assert heat["meta"]["crs"] == "gcj02" and heat["points"]
    assert "GCJ-02" in client.get("/map").text


# -- the dashboard and the stats --------------------------------------------------------------


def test_the_stats_split_cases_by_mechanism_side_and_status(client: Any, conn: Any) -> None:
    before = client.get("/api/v1/stats").json()
    a = report(client, *point_inside(ANJU, 300, 0.70), category="theft")
    report(client, *point_inside(TONGNAN, 4000, 0.70), category="fire")
    conn.execute(
        "UPDATE incidents SET due_at = now() - interval '1 hour' WHERE id = %s", (a["id"],)
    )
    doc = client.get("/api/v1/stats").json()
    t0, t1 = before["totals"], doc["totals"]
    assert t1["cases"] == t0["cases"] + 2 and t1["open"] == t0["open"] + 2
    assert t1["overdue"] == t0["overdue"] + 1 and t1["cross_boundary"] == t0["cross_boundary"] + 1
    assert 0 < t1["cross_boundary_share"] <= 1
    mech = {r["mechanism"]: r for r in doc["by_mechanism"]}
    old = {r["mechanism"]: r for r in before["by_mechanism"]}
    assert mech["joint_defense"]["open"] == old.get("joint_defense", {"open": 0})["open"] + 1
    assert mech["none"]["total"] == old.get("none", {"total": 0})["total"] + 1
    assert {r["side"] for r in doc["by_side"]} >= {ANJU, TONGNAN}
    assert any(r["code"] == a["code"] and r["hours_overdue"] >= 0.9 for r in doc["overdue"])
    assert {c["mechanism"] for c in doc["compliance"]} >= {"joint_defense"}
    assert len(doc["weekly"]) == 12 and doc["weekly"][-1]["reported"] >= 2
    assert any(g["grid_code"] == a["grid"]["code"] for g in doc["grids"])
    assert set(doc["tables"]) >= {"by_mechanism", "by_side", "by_status", "overdue", "grids"}
    only = client.get("/api/v1/stats", params={"mechanism": "joint_defense", "side": ANJU}).json()
    assert {r["mechanism"] for r in only["by_mechanism"]} == {"joint_defense"}
    assert only["filters"] == {"mechanism": "joint_defense", "side": ANJU}


def test_every_table_of_the_stats_downloads_as_csv(client: Any) -> None:
    report(client, *point_inside(ANJU, 300, 0.85))
    doc = client.get("/api/v1/stats").json()
    for table in doc["tables"]:
        r = client.get("/api/v1/stats", params={"format": "csv", "table": table})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert table in r.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
        expected = doc[table] if isinstance(doc[table], list) else [doc[table]]
        assert len(rows) == len(expected), table
    r = client.get("/dashboard", params={"format": "csv", "table": "by_side"})
    assert r.status_code == 200 and ANJU in r.text
    bad = client.get("/api/v1/stats", params={"format": "csv", "table": "secrets"})
    assert bad.status_code == 422 and "by_mechanism" in bad.json()["detail"]["valid"]


def test_the_dashboard_draws_its_charts_and_the_hot_spot_map_on_the_server(client: Any) -> None:
    case = report(client, *point_inside(ANJU, 300, 0.8))
    r = client.get("/dashboard", params={"window": "30d"})
    assert r.status_code == 200
    html = r.text
    assert html.count('class="jg-chart"') >= 5 and 'class="choropleth"' in html
    assert case["grid"]["name"] in html  # its grid is drawn, and listed as a hot spot
    assert "table=overdue" in html and "table=grids" in html and "window=30d" in html
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', html)


def test_an_empty_csv_has_its_header_row_and_the_china_date(client: Any) -> None:
    from api.pages.dashboard import COLUMNS

    doc = client.get("/api/v1/stats").json()
    for table, columns in COLUMNS.items():  # the declared columns are the query's keys
        rows = doc[table] if isinstance(doc[table], list) else [doc[table]]
        for row in rows:
            assert tuple(row) == columns, table
    empty = client.get(
        "/api/v1/stats", params={"format": "csv", "table": "overdue", "category": "drugs"}
    )
    lines = empty.text.lstrip("\ufeff").splitlines()
    assert lines == [",".join(COLUMNS["overdue"])]
    china_date = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    assert f"jointgrid-overdue-{china_date}.csv" in empty.headers["content-disposition"]


def test_the_dashboard_speaks_chinese_links_to_case_pages_and_marks_thin_rates(
    client: Any, conn: Any
) -> None:
    case = report(client, *point_inside(ANJU, 300, 0.86), category="theft")
    conn.execute(
        "UPDATE incidents SET due_at = now() - interval '2 hours' WHERE id = %s", (case["id"],)
    )
    html = client.get("/dashboard", params={"mechanism": "joint_defense"}).text
    assert "时限办结率" in html and "超期事件" in html and "各机制办理情况" in html
    assert f'href="/cases/{case["code"]}"' in html
    assert "/api/v1/incidents/" not in html  # no link to raw JSON
    # A rate over fewer than 10 cases says how many, and that it is indicative only.
    assert re.search(r'class="rate few"[^>]*>[^<]*（\d 件）', html), html[:0]
    assert 'data-refresh-s="60' in html
    wall = client.get("/dashboard", params={"layout": "wall"})
    assert wall.status_code == 200 and '<body class="wall"' in wall.text
    assert client.get("/dashboard", params={"layout": "huge"}).status_code == 422


# -- the report page --------------------------------------------------------------------------


def test_the_report_page_offers_the_catalogue_and_the_coordinate_systems(
    client: Any, catalogue: Any
) -> None:
    r = client.get("/report")
    assert r.status_code == 200
    html = r.text
    options = re.findall(r'<option value="([a-z_]+)">([^<]+)</option>', html)
    cats = {v for v, _ in options if v in catalogue.categories}
    assert cats == set(catalogue.categories)
    assert html.count("<optgroup") == len(catalogue.groups)
    for code, c in catalogue.categories.items():
        assert f'<option value="{code}">{c.name}</option>' in html, code
    for crs in ("wgs84", "gcj02", "bd09"):  # asked in plain words, for typed numbers only
        assert f'name="crs" value="{crs}"' in html
    assert all(f'value="{s}"' in html for s in catalogue.severities)
    urls = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    urls = [u for u in urls if u != "data:,"]
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls)
    cfg = json.loads(re.search(r'id="report-config">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert cfg["post_url"] == "/api/v1/incidents" and cfg["map_crs"] == "wgs84"
