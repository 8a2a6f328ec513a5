"""The pages in a real browser: Debian's Chromium driven by Playwright, on a real server.

Playwright's own browser downloads are never used: the tests launch /usr/bin/chromium (installed
by ``scripts/setup.sh test``). Screenshots land in var/test-artifacts/.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from psycopg import sql as q

from api.pages import maplook
from api.pages.mapview import layer_title
from gis.crs import from_wgs84
from layers import mapdata
from tests.conftest import _server_url, _with_db, serving
from tests.geo import ANJU, TONGNAN, point_inside

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "var" / "test-artifacts"
DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}
BENCH_OPEN = 50_000
# A bound on a drawing that hangs, not a speed target: bench/pages.py measures the time against
# the empty view of the same run (its goal: at most 3x).
FIRST_RENDER_BOUND_MS = 30_000


@pytest.fixture(scope="module")
def auth(request: pytest.FixtureRequest) -> dict[str, str]:
    """An Authorization header when the server asks for API keys, else nothing."""
    try:
        keys = request.getfixturevalue("api_keys")
    except pytest.FixtureLookupError:
        return {}
    return {"Authorization": f"Bearer {keys['admin']}"}


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


class Requests:
    """Every request a browser context makes, and every answer of 400 or more."""

    def __init__(self, context: Any) -> None:
        self.urls: list[str] = []
        self.failed: list[str] = []
        context.on("request", lambda r: self.urls.append(r.url))
        context.on("requestfailed", lambda r: self.failed.append(f"{r.url} {r.failure}"))
        context.on(
            "response", lambda r: r.status >= 400 and self.failed.append(f"{r.url} {r.status}")
        )

    def outside(self) -> list[str]:
        """Requests that would leave this machine (any http(s) host but 127.0.0.1)."""
        out = []
        for u in self.urls:
            parts = urlsplit(u)
            if parts.scheme in ("data", "blob", "about"):
                continue
            if parts.hostname != "127.0.0.1":
                out.append(u)
        return out


def new_page(browser: Any, auth: dict[str, str], **options: Any) -> tuple[Any, Any, Requests]:
    context = browser.new_context(extra_http_headers=auth, **options)
    seen = Requests(context)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    return context, page, seen


def wait_js(page: Any, expression: str, timeout: float = 30_000) -> Any:
    """Wait until ``expression`` is truthy in the page; return its value.

    Playwright's ``wait_for_function`` polls by evaluating text as script inside the page,
    which the pages' Content-Security-Policy refuses (no 'unsafe-eval'); ``page.evaluate``
    runs through the debugging protocol, which the policy does not govern.
    """
    deadline = time.monotonic() + timeout / 1000
    guarded = f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return false; }} }})()"
    while True:
        value = page.evaluate(guarded)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout:.0f} ms: {expression}")
        page.wait_for_timeout(50)


def wait_ready(page: Any, timeout_ms: int = 20_000) -> float:
    """Wait until the map has drawn its incidents and visible layers; return that time (ms since
    navigation start, as the page measured it)."""
    wait_js(page, "document.documentElement.getAttribute('data-jg-ready')", timeout=timeout_ms)
    return float(page.evaluate("JointGrid.readyAt"))


def make_case(base: str, auth: dict[str, str], lon: float, lat: float, category: str) -> Any:
    r = httpx.post(
        f"{base}/api/v1/incidents",
        json={"lon": lon, "lat": lat, "category": category, "description": "browser test"},
        headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return r.json()


def view_hash(lon: float, lat: float, zoom: int) -> str:
    return f"#{zoom}/{lat:.6f}/{lon:.6f}"


def cases_with_key(db_url: str, key: str) -> list[dict[str, Any]]:
    """The cases made with this Idempotency-Key (stored as is, or after the caller's key id)."""
    with psycopg.connect(db_url) as c:
        rows = c.execute(
            "SELECT id::text, code, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM incidents"
            " WHERE idempotency_key = %(k)s OR idempotency_key LIKE '%%:' || %(k)s",
            {"k": key},
        ).fetchall()
    return [{"id": r[0], "code": r[1], "lon": r[2], "lat": r[3]} for r in rows]


# -- the command-centre map -------------------------------------------------------------------


def test_the_map_draws_every_layer_and_asks_nothing_from_outside(
    live_server: str, db_url: str, browser: Any, auth: dict[str, str]
) -> None:
    from tests.test_patrol_browser import patrol_now

    patrol_now(db_url, live_server)  # live positions and today's tracks have something to draw
    lon, lat = point_inside(ANJU, 400, 0.418)
    for k in range(3):
        make_case(live_server, auth, lon + 0.001 * k, lat, "river_pollution")
    views = [v.id for v in mapdata.views()]
    context, page, seen = new_page(browser, auth, viewport=DESKTOP)
    try:
        layers = ",".join([*views, "incidents", "heat"])
        page.goto(f"{live_server}/map?layers={layers}{view_hash(lon, lat, 13)}")
        wait_ready(page)
        wait_js(page, "JointGrid.status.heat && JointGrid.status.heat.state === 'loaded'")
        status = page.evaluate("JointGrid.status")
        for v in views:
            assert status["layers"][v]["state"] == "loaded", (v, status["layers"][v])
            assert status["layers"][v]["features"] > 0, v
        assert status["incidents"]["cases"] >= 3 and status["heat"]["points"] >= 1
        control = page.inner_text(".leaflet-control-layers")
        for v in mapdata.views():
            assert layer_title(v, "zh_CN") in control
        assert "事件" in control and "热力图" in control
        assert page.locator(".leaflet-overlay-pane canvas").count() >= 1  # polygons drawn
        assert page.locator(".jg-legend").is_visible()
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        context.close()
    assert len(seen.urls) > 20
    assert seen.outside() == [], seen.outside()
    assert seen.failed == [], seen.failed


def test_clicking_an_incident_opens_its_popup_with_its_mechanism(
    live_server: str, browser: Any, auth: dict[str, str], artifacts: Path
) -> None:
    lon, lat = point_inside(ANJU, 300, 0.137)
    case = make_case(live_server, auth, lon, lat, "land_dispute")
    assert case["mechanism"] == "joint_mediation"
    context, page, seen = new_page(browser, auth, viewport=DESKTOP)
    try:
        page.goto(f"{live_server}/map{view_hash(lon, lat, 18)}")
        wait_ready(page)
        marker = page.locator(f'.jg-mark[data-id="{case["id"]}"]')
        marker.wait_for(timeout=10_000)
        marker.click()
        popup = page.locator(".leaflet-popup .jg-popup[data-id]")
        popup.wait_for(timeout=10_000)
        text = popup.inner_text()
        assert case["code"] in text
        assert "联调" in page.inner_text(".leaflet-popup .jg-mechanism")
        for c in case["contacts"]:
            assert c["name"] in text
        link = page.locator(".leaflet-popup a", has_text="办理记录")
        assert link.get_attribute("href") == f"/api/v1/incidents/{case['id']}/events"
        page.wait_for_timeout(600)  # the popup's fade-in and pan
        page.screenshot(path=str(artifacts / "map-popup.png"))
    finally:
        context.close()
    assert seen.outside() == []


# -- the report page --------------------------------------------------------------------------


def fill_report(page: Any, category: str, severity: str, description: str) -> None:
    page.select_option("#category", category)
    page.check(f"input[name=severity][value={severity}]", force=True)
    page.fill("#description", description)


def test_a_report_from_the_report_page_is_on_the_map_within_one_refresh(
    live_server: str, browser: Any, auth: dict[str, str], artifacts: Path
) -> None:
    lon, lat = point_inside(TONGNAN, 300, 0.263)
    refresh_s = 3
    map_ctx, map_page, map_seen = new_page(browser, auth, viewport=DESKTOP)
    rep_ctx, rep_page, rep_seen = new_page(
        browser,
        auth,
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        geolocation={"longitude": lon, "latitude": lat, "accuracy": 12},
        permissions=["geolocation"],
    )
    try:
        map_page.goto(f"{live_server}/map?refresh={refresh_s}{view_hash(lon, lat, 18)}")
        wait_ready(map_page)
        rep_page.goto(f"{live_server}/report")
        fill_report(rep_page, "theft", "orange", "自行车被盗 / a bicycle was stolen")
        rep_page.click("#gps")
        wait_js(rep_page, "document.getElementById('declared').classList.contains('set')")
        assert "手机定位" in rep_page.inner_text("#declared")
        rep_page.click("#send")
        result = rep_page.locator("#results li.ok")
        result.wait_for(timeout=20_000)
        sent_at = time.monotonic()
        code = result.locator(".code").inner_text()
        assert "联防" in result.locator(".mechanism").inner_text()
        assert "T" in result.locator(".lead-team").inner_text()  # a team code
        assert result.locator(".due").inner_text() not in ("", "—")
        rep_page.screenshot(path=str(artifacts / "report.png"), full_page=True)

        map_page.locator(f'.jg-mark[data-code="{code}"]').wait_for(timeout=(refresh_s + 5) * 1000)
        waited = time.monotonic() - sent_at
        assert waited <= refresh_s + 2, f"shown after {waited:.1f} s"
        print(f"\nreport {code} shown on the map {waited:.1f} s after it was accepted")
    finally:
        map_ctx.close()
        rep_ctx.close()
    assert map_seen.outside() == [] and rep_seen.outside() == []


def test_a_report_made_offline_is_sent_exactly_once_when_the_network_returns(
    live_server: str, browser: Any, auth: dict[str, str], db_url: str
) -> None:
    lon, lat = point_inside(ANJU, 300, 0.333)
    glon, glat = from_wgs84(lon, lat, "gcj02")  # read off an Amap-based phone map
    context, page, seen = new_page(browser, auth, viewport=PHONE, is_mobile=True, has_touch=True)
    posts: list[str | None] = []
    page.on(
        "request",
        lambda r: (
            r.method == "POST"
            and r.url.endswith("/api/v1/incidents")
            and posts.append(r.headers.get("idempotency-key"))
        ),
    )
    try:
        page.goto(f"{live_server}/report")
        fill_report(page, "neighbor_dispute", "yellow", "邻里噪音纠纷 / noise between neighbours")
        page.fill("#lon", f"{glon:.7f}")
        page.fill("#lat", f"{glat:.7f}")
        # Typed numbers come with the question where they are from, in plain words.
        page.check("input[name=crs][value=gcj02]")
        assert "高德" in page.inner_text("#declared")

        context.set_offline(True)
        page.click("#send")
        page.locator("#queue li.queued").wait_for()
        assert "离线" in page.inner_text("#net")
        queue = json.loads(page.evaluate("localStorage.getItem('jointgrid.report.queue.v1')"))
        assert len(queue) == 1
        key = queue[0]["key"]
        uuid.UUID(key)  # made on the phone, when the report was made
        assert cases_with_key(db_url, key) == [] and posts == []

        # The network returns, but the first answer is lost on the way back: the server has
        # made the case, the phone does not know it, and keeps the report.
        def lose_answer(route: Any) -> None:
            route.fetch()
            route.abort("connectionreset")

        page.route("**/api/v1/incidents", lose_answer)
        context.set_offline(False)
        wait_js(
            page, "document.querySelector('#queue li.queued small').textContent.includes('无网络')"
        )
        assert len(cases_with_key(db_url, key)) == 1
        assert (
            len(json.loads(page.evaluate("localStorage.getItem('jointgrid.report.queue.v1')"))) == 1
        )

        page.unroute("**/api/v1/incidents")
        page.evaluate("window.dispatchEvent(new Event('online'))")  # what a reconnect fires
        page.locator("#results li.ok").wait_for(timeout=20_000)
        assert json.loads(page.evaluate("localStorage.getItem('jointgrid.report.queue.v1')")) == []
        code = page.locator("#results li.ok .code").inner_text()
    finally:
        context.close()
    rows = cases_with_key(db_url, key)
    assert len(rows) == 1 and rows[0]["code"] == code
    assert abs(rows[0]["lon"] - lon) < 1e-6 and abs(rows[0]["lat"] - lat) < 1e-6  # GCJ-02 undone
    assert posts == [key, key]  # the same key on every try
    assert seen.outside() == []


def test_a_refused_report_shows_the_servers_message_and_leaves_the_queue(
    live_server: str, browser: Any, auth: dict[str, str]
) -> None:
    context, page, _ = new_page(browser, auth, viewport=PHONE, is_mobile=True)
    try:
        page.goto(f"{live_server}/report")
        fill_report(page, "fire", "red", "far away")
        page.fill("#lon", "116.397")  # Beijing: outside both sides
        page.fill("#lat", "39.909")
        page.check("input[name=crs][value=wgs84]")
        page.click("#send")
        refused = page.locator("#rejected li.rejected")
        refused.wait_for(timeout=20_000)
        assert "服务区域外" in refused.inner_text()
        assert json.loads(page.evaluate("localStorage.getItem('jointgrid.report.queue.v1')")) == []
    finally:
        context.close()


# -- 50,000 open incidents --------------------------------------------------------------------

# Synthetic cases straight into the table (the routing is not what is measured here): points
# spread over each side's border zone and over each district, with a grid, a police grid, a
# mechanism by category, a lead team for cross-boundary ones and the grid chief as contact.
SYNTH_SQL = """
WITH params AS (
    SELECT %(categories)s::text[] AS cats, %(mechanisms)s::text[] AS mechs,
           %(statuses)s::text[] AS statuses, %(severities)s::text[] AS sevs,
           %(hours)s::float8[] AS hours
),
pts AS (
    SELECT b.side, true AS in_zone,
           (ST_Dump(ST_GeneratePoints(b.geom, %(n_zone)s / 2, %(seed)s))).geom AS g
    FROM border b WHERE b.kind = 'zone'
    UNION ALL
    SELECT a.code, false, (ST_Dump(ST_GeneratePoints(a.geom, %(n_land)s / 2, %(seed)s + 1))).geom
    FROM areas a WHERE a.level = 'district'
),
lead_team AS (
    SELECT DISTINCT ON (m) m AS mechanism, jsonb_build_array(jsonb_build_object('code', code,
           'name', name, 'kind', kind, 'side', side, 'lead', true)) AS teams
    FROM teams, unnest(mechanisms) AS m ORDER BY m, code
),
numbered AS (
    SELECT row_number() OVER () AS k, side, g, in_zone,
           abs(hashint4(%(seed)s + (row_number() OVER ())::int)) AS h1,
           abs(hashint4(%(seed)s * 7 + (row_number() OVER ())::int)) AS h2,
           abs(hashint4(%(seed)s * 13 + (row_number() OVER ())::int)) AS h3
    FROM pts
),
placed AS (
    SELECT n.*, gr.code AS grid_code, gr.name AS grid_name, gr.chief_name, gr.chief_phone,
           pg.code AS police_code,
           p.cats[1 + n.h1 %% array_length(p.cats, 1)] AS category,
           p.mechs[1 + n.h1 %% array_length(p.cats, 1)] AS group_mech,
           p.statuses[1 + n.h2 %% array_length(p.statuses, 1)] AS status,
           1 + n.h3 %% 4 AS sev_i, p.sevs, p.hours
    FROM numbered n CROSS JOIN params p
    LEFT JOIN LATERAL (SELECT code, name, chief_name, chief_phone FROM grids
                       WHERE ST_Intersects(geom, n.g) LIMIT 1) gr ON true
    LEFT JOIN LATERAL (SELECT code FROM police_grids WHERE ST_Intersects(geom, n.g) LIMIT 1) pg ON true
),
timed AS (
    SELECT pl.*, now() - ((pl.h2 %% (%(days)s * 24 * 60)) * interval '1 minute') AS reported_at
    FROM placed pl
)
INSERT INTO incidents (code, side, sides, status, category, severity, description, occurred_at,
    reported_at, updated_at, due_at, cross_boundary, reasons, mechanism, lead_side, grid_code,
    police_grid_code, teams, contacts, routing, escalation_level, idempotency_key, geom)
SELECT 'JG' || to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD') || '-'
           || lpad(nextval('incident_code_seq')::text, 6, '0'),
       t.side,
       CASE WHEN t.in_zone THEN ARRAY['500152', '510904'] ELSE ARRAY[t.side] END,
       t.status, t.category, t.sevs[t.sev_i], 'synthetic case for the map benchmark',
       t.reported_at, t.reported_at,
       CASE WHEN t.status IN ('reported', 'accepted', 'dispatched', 'in_progress') THEN t.reported_at
            ELSE t.reported_at + ((t.h3 %% 200) * interval '1 hour') END,
       t.reported_at + t.hours[t.sev_i] * interval '1 hour',
       t.in_zone, CASE WHEN t.in_zone THEN ARRAY['border_zone'] ELSE '{}'::text[] END,
       CASE WHEN t.in_zone THEN t.group_mech END,
       t.side, t.grid_code, t.police_code,
       CASE WHEN t.in_zone THEN coalesce((SELECT lt.teams FROM lead_team lt
            WHERE lt.mechanism = t.group_mech), '[]'::jsonb) ELSE '[]'::jsonb END,
       CASE WHEN t.grid_code IS NOT NULL THEN jsonb_build_array(jsonb_build_object(
            'name', t.chief_name, 'role', 'grid_chief', 'side', t.side, 'unit', t.grid_name,
            'phone', t.chief_phone)) ELSE '[]'::jsonb END,
       jsonb_build_object('trace', jsonb_build_array(jsonb_build_object('step', 'synthetic',
            'says', 'generated by the test suite for the map benchmark'))),
       CASE WHEN t.status IN ('reported', 'accepted', 'dispatched', 'in_progress', 'resolved')
             AND t.reported_at + t.hours[t.sev_i] * interval '1 hour' < now()
            THEN t.h3 %% 3 ELSE 0 END,
       %(key_prefix)s || t.k,
       t.g
FROM timed t
"""


def add_synthetic_cases(
    conn: Any,
    catalogue: Any,
    *,
    n_zone: int,
    n_land: int,
    statuses: list[str],
    seed: int,
    days: int,
    prefix: str,
) -> None:
    cats = sorted(catalogue.categories)
    sevs = list(catalogue.severities)
    conn.execute(
        SYNTH_SQL,
        {
            "categories": cats,
            "mechanisms": [catalogue.mechanism_for(c) for c in cats],
            "statuses": statuses,
            "severities": sevs,
            "hours": [catalogue.severities[s].resolve_hours for s in sevs],
            "n_zone": n_zone,
            "n_land": n_land,
            "seed": seed,
            "days": days,
            "key_prefix": prefix,
        },
    )


@pytest.fixture(scope="module")
def bench_server(
    catalogue: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    """A server on its own database with the demo data and 50,000 open cases (plus 8,000
    finished ones), and an admin key's header for it; dropped afterwards."""
    from api import settings
    from api.usecases.loading import seed
    from layers import keys
    from layers.db import connect, migrate

    server = _server_url()
    name = f"jointgrid_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(_with_db(server, "postgres"), autocommit=True)
    admin.execute(q.SQL("CREATE DATABASE {}").format(q.Identifier(name)))
    url = _with_db(server, name)
    try:
        started = time.monotonic()
        with connect(url) as conn:
            conn.autocommit = True
            migrate(conn)
            conn.autocommit = False
            seed(conn, settings.data().boundary_dir, catalogue=catalogue)
            conn.commit()
            conn.autocommit = True
            conn.execute("SET jit = off")
            open_ = ["reported", "accepted", "dispatched", "in_progress", "resolved"]
            add_synthetic_cases(
                conn,
                catalogue,
                n_zone=30_000,
                n_land=20_000,
                statuses=open_,
                seed=11,
                days=21,
                prefix="bench-open-",
            )
            done = ["closed", "closed", "verified", "rejected", "duplicate", "closed"]
            add_synthetic_cases(
                conn,
                catalogue,
                n_zone=4_000,
                n_land=4_000,
                statuses=done,
                seed=12,
                days=90,
                prefix="bench-done-",
            )
            conn.execute("ANALYZE incidents")
            token, _ = keys.create(conn, role="admin", side=None, name="browser bench")
            n_open = conn.execute(
                "SELECT count(*) AS n FROM incidents WHERE status = ANY(%s)", (open_,)
            ).fetchone()["n"]
        assert n_open == BENCH_OPEN
        print(
            f"\nbench database: {n_open:,} open cases loaded in {time.monotonic() - started:.1f} s"
        )
        log = tmp_path_factory.mktemp("bench") / "server.log"
        with serving(url, log=log) as (base, _proc):
            yield base, {"Authorization": f"Bearer {token}"}
    finally:
        admin.execute(q.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(q.Identifier(name)))
        admin.close()


def test_the_map_first_renders_50000_open_incidents_as_counted_cells(
    bench_server: tuple[str, dict[str, str]], browser: Any, artifacts: Path
) -> None:
    bench_server, auth = bench_server  # type: ignore[assignment]
    runs = []
    for _ in range(3):
        # A fresh context each time: nothing cached, as for an operator opening the map.
        context, page, seen = new_page(browser, auth, viewport=DESKTOP)
        try:
            started = time.monotonic()
            page.goto(f"{bench_server}/map")
            ready_ms = wait_ready(page)
            wall_ms = (time.monotonic() - started) * 1000
            status = page.evaluate("JointGrid.status.incidents")
            assert status["cases"] == BENCH_OPEN and status["mode"] == "cells"
            runs.append((ready_ms, wall_ms, status["features"]))
            if len(runs) == 1:
                page.wait_for_timeout(300)
                page.screenshot(path=str(artifacts / "map.png"))
        finally:
            context.close()
        assert seen.outside() == [] and seen.failed == []
    lines = [
        f"first render of /map with {BENCH_OPEN:,} open incidents (headless Chromium, cold cache):",
        *(
            f"  run {i + 1}: ready {r:.0f} ms after navigation start ({w:.0f} ms wall clock), "
            f"{n} cells"
            for i, (r, w, n) in enumerate(runs)
        ),
    ]
    (artifacts / "map-first-render.txt").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    # How fast is bench/pages.py's question (against the empty view in the same run, since
    # absolute times on a shared machine drift); here: it draws, as cells, and in bounded time.
    assert max(r for r, _, _ in runs) < FIRST_RENDER_BOUND_MS, lines


def test_the_dashboard_and_the_heat_map_with_50000_open_incidents(
    bench_server: tuple[str, dict[str, str]], browser: Any, artifacts: Path
) -> None:
    bench_server, auth = bench_server  # type: ignore[assignment]
    context, page, seen = new_page(browser, auth, viewport={"width": 1400, "height": 1000})
    try:
        started = time.monotonic()
        page.goto(f"{bench_server}/dashboard")
        page.wait_for_load_state("load")
        took = time.monotonic() - started
        assert page.locator("svg.choropleth path").count() > 2000
        assert "50,000" in page.inner_text(".tiles")
        page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
        print(f"\ndashboard with {BENCH_OPEN:,} open incidents loaded in {took:.2f} s")
        views = ",".join(v.id for v in mapdata.views() if maplook.look(v).show)
        page.set_viewport_size(DESKTOP)
        page.goto(f"{bench_server}/map?layers={views},heat")
        wait_ready(page)
        wait_js(page, "JointGrid.status.heat && JointGrid.status.heat.state === 'loaded'")
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts / "map-heat.png"))
    finally:
        context.close()
    assert seen.outside() == [] and seen.failed == []
