"""The grid worker's page on a phone, in a real browser: a map to tap, no dead links, and it
opens with no signal after one visit.

The server here is one of the test's own, so that the test can stop it: Playwright's
``set_offline`` does not cut a service worker's own fetches, so "no signal" is the page offline
*and* the server gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, wait_healthy
from tests.geo import ANJU, point_inside
from tests.test_browser import ARTIFACTS, cases_with_key, wait_js

pytestmark = pytest.mark.browser

PHONE = {"width": 360, "height": 740}
QUEUE = "jointgrid.report.queue.v1"


class Server:
    """``jointgrid serve`` on a fixed port, which the test may stop and start again."""

    def __init__(self, db_url: str, log: Path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db_url = db_url
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = env

    def start(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "JOINTGRID_ESCALATION_INTERVAL_S": "0",
            **self.env,
        }
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_healthy(self.base, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture()
def server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    srv = Server(db_url, tmp_path / "server.log")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def phone(browser: Any, lon: float, lat: float) -> Any:
    return browser.new_context(
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        geolocation={"longitude": lon, "latitude": lat, "accuracy": 10},
        permissions=["geolocation"],
    )


def sign_in(page: Any, base: str, key: str, target: str = "/report") -> None:
    page.goto(f"{base}/login?next={target}")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{target}*")


def test_a_grid_worker_may_load_the_public_geometry_of_the_page_and_nothing_else(
    server: Server, api_keys: dict[str, str]
) -> None:
    worker = {"Authorization": f"Bearer {api_keys['grid_worker:510904']}"}
    for view in ("districts", "border_line", "border_zone", "villages"):
        r = httpx.get(f"{server.base}/map/data/layers/{view}?z=12", headers=worker)
        assert r.status_code == 200, (view, r.text)
        assert r.json()["features"], view
    grids = httpx.get(
        f"{server.base}/map/data/layers/grids?z=14&bbox=105.0,29.7,106.1,30.7", headers=worker
    ).json()["features"]
    assert grids and {g["properties"]["side"] for g in grids if not g["properties"]["joint"]} == {
        "510904"
    }
    for view in ("team_bases", "team_areas", "police_grids", "chiefs"):
        r = httpx.get(f"{server.base}/map/data/layers/{view}?z=12", headers=worker)
        assert r.status_code == 404, view
        assert view not in r.json()["detail"]["layers"]
    # The command centre's own data stays closed to a field key.
    r = httpx.get(f"{server.base}/map/data/incidents?bbox=105,29.7,106.1,30.7", headers=worker)
    assert r.status_code == 403


def test_no_link_on_the_report_page_leads_a_grid_worker_to_a_refusal(
    server: Server, browser: Any, api_keys: dict[str, str]
) -> None:
    lon, lat = point_inside(ANJU, 400, 0.41)
    context = phone(browser, lon, lat)
    page = context.new_page()
    try:
        sign_in(page, server.base, api_keys["grid_worker:510904"])
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        for href in hrefs:
            if href.startswith(("tel:", "mailto:", "#")):
                continue
            r = httpx.get(href, cookies=cookies, follow_redirects=False)
            assert r.status_code not in (403, 404), (href, r.status_code)
    finally:
        context.close()


def test_the_report_page_opens_with_no_signal_and_sends_its_queue_once(
    server: Server, browser: Any, api_keys: dict[str, str], db_url: str
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    lon, lat = point_inside(ANJU, 500, 0.52)
    context = phone(browser, lon, lat)
    page = context.new_page()
    outside: list[str] = []
    context.on(
        "request",
        lambda r: r.url.startswith("http") and "127.0.0.1" not in r.url and outside.append(r.url),
    )
    try:
        sign_in(page, server.base, api_keys["grid_worker:510904"])
        # 1. The district outline is drawn under the pin.
        wait_js(
            page,
            "document.querySelectorAll('#map path.leaflet-interactive, #map svg path').length > 0",
        )
        # The worker's service worker is installed and controls the page after one visit.
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        page.reload()
        wait_js(page, "navigator.serviceWorker.controller !== null")

        # 2. A report once online.
        page.select_option("#category", "neighbor_dispute")
        page.fill("#description", "在线上报 / sent online")
        page.click("#gps")
        wait_js(page, "document.getElementById('declared').classList.contains('set')")
        page.click("#send")
        page.locator("#results li.ok").wait_for(timeout=20_000)

        # 3. No signal: the page offline and the server gone.
        server.stop()
        context.set_offline(True)
        page.reload()
        page.locator("#report").wait_for(timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "report-offline.png"), full_page=True)

        # 4. A report made with no signal is queued, and sent once when the network returns.
        page.select_option("#category", "illegal_dumping")
        page.fill("#description", "离线上报 / made with no signal")
        page.click("#gps")
        wait_js(page, "document.getElementById('declared').classList.contains('set')")
        page.click("#send")
        page.locator("#queue li.queued").wait_for()
        queue = json.loads(page.evaluate(f"localStorage.getItem('{QUEUE}')"))
        assert len(queue) == 1
        key = queue[0]["key"]
        assert cases_with_key(db_url, key) == []

        server.start()
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        wait_js(
            page,
            f"JSON.parse(localStorage.getItem('{QUEUE}') || '[]').length === 0",
            timeout=30_000,
        )
        assert len(cases_with_key(db_url, key)) == 1
    finally:
        context.close()
    assert outside == []


def test_after_a_send_the_answer_is_in_view_and_the_location_must_be_set_again(
    server: Server, browser: Any, api_keys: dict[str, str]
) -> None:
    lon, lat = point_inside(ANJU, 300, 0.47)
    context = phone(browser, lon, lat)
    page = context.new_page()
    try:
        sign_in(page, server.base, api_keys["grid_worker:510904"])
        page.select_option("#category", "theft")
        page.fill("#description", "电动车被盗")
        page.click("#gps")
        wait_js(page, "document.getElementById('declared').classList.contains('set')")
        page.click("#send")
        answer = page.locator("#results li.ok").first
        answer.wait_for(timeout=20_000)
        wait_js(page, "document.activeElement && document.activeElement.matches('#results li.ok')")
        box = answer.bounding_box()
        assert box is not None and 0 <= box["y"] < PHONE["height"] - 100, box
        shown = answer.inner_text()
        assert "联防" in shown and "安居区" in shown and "潼南区" in shown  # every side, by name
        # The next report starts with no location: the last one is never silently reused.
        assert page.input_value("#lon") == "" and page.input_value("#description") == ""
        assert "尚未选择位置" in page.inner_text("#declared")
        page.click("#send")
        assert "请选择事件类别" in page.inner_text("#form-error")
        page.select_option("#category", "theft")
        page.click("#send")
        assert "请提供位置" in page.inner_text("#form-error")
        # My reports: read from the server, with the status by name.
        page.locator("#mine li[data-code]").first.wait_for()
        assert "待受理" in page.inner_text("#mine")
        page.screenshot(path=str(ARTIFACTS / "report-sent-phone.png"))
    finally:
        context.close()


def test_a_refused_report_keeps_everything_typed_and_says_why_in_chinese(
    server: Server, browser: Any, api_keys: dict[str, str]
) -> None:
    context = phone(browser, 105.6, 30.3)
    page = context.new_page()
    try:
        sign_in(page, server.base, api_keys["grid_worker:510904"])
        page.select_option("#category", "fire")
        page.check("input[name=severity][value=red]", force=True)
        page.fill("#description", "山林起火，火势较大")
        page.fill("#lon", "116.397")  # Beijing: outside both sides
        page.fill("#lat", "39.909")
        assert page.is_visible("#source")  # typed numbers: where are they from?
        page.click("#send")
        assert "坐标的来源" in page.inner_text("#form-error")
        page.check("input[name=crs][value=gcj02]")
        page.click("#send")
        refused = page.locator("#rejected li.rejected").first
        refused.wait_for(timeout=20_000)
        assert page.is_visible("#rejected-card h2")
        assert "未受理" in page.inner_text("#rejected-card h2")
        assert "服务区域外" in refused.inner_text()
        # Everything typed is back in the form, to correct and send again.
        assert page.input_value("#category") == "fire"
        assert page.input_value("#description") == "山林起火，火势较大"
        assert page.input_value("#lon").startswith("116.397")
        assert page.is_checked("input[name=severity][value=red]")
        assert page.is_checked("input[name=crs][value=gcj02]")
        page.screenshot(path=str(ARTIFACTS / "report-refused-phone.png"), full_page=True)
    finally:
        context.close()


def test_every_tap_target_is_at_least_44_px(
    server: Server, browser: Any, api_keys: dict[str, str]
) -> None:
    context = phone(browser, 105.6, 30.3)
    page = context.new_page()
    try:
        sign_in(page, server.base, api_keys["grid_worker:510904"])
        page.fill("#lon", "105.6")
        page.fill("#lat", "30.3")  # shows the source question too
        small = page.evaluate(
            """() => [...document.querySelectorAll(
                 'select, input:not([type=radio]), textarea, button, a[href], .sev span, .choice, .leaflet-control-zoom a')]
               .filter(e => e.offsetParent !== null)
               .map(e => [e.id || e.className || e.tagName, e.getBoundingClientRect()])
               .filter(([, r]) => r.width < 44 || r.height < 44)
               .map(([n, r]) => `${n} ${Math.round(r.width)}x${Math.round(r.height)}`)"""
        )
        assert small == []
    finally:
        context.close()


def test_the_dashboard_refreshes_itself_and_fits_a_wall_screen(
    db_url: str, tmp_path: Path, browser: Any, api_keys: dict[str, str]
) -> None:
    srv = Server(db_url, tmp_path / "server.log", JOINTGRID_DASHBOARD_REFRESH_S="5")
    srv.start()
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    page = context.new_page()
    try:
        sign_in(page, srv.base, api_keys["operator:510904"], "/dashboard?layout=wall")
        first = page.get_attribute("#refreshed", "data-at")
        wait_js(
            page,
            f"document.getElementById('refreshed').getAttribute('data-at') !== '{first}'",
            timeout=15_000,
        )
        assert "最近刷新" in page.inner_text("#refreshed")
        # Every panel shows without scrolling on the wall screen.
        sizes = page.evaluate(
            "() => [document.documentElement.scrollHeight, document.documentElement.scrollWidth,"
            " ...[...document.querySelectorAll('.grid section, .tiles')].map("
            "s => s.getBoundingClientRect().bottom)]"
        )
        assert sizes[0] <= 1080 and sizes[1] <= 1920, sizes
        assert max(sizes[2:]) <= 1080, sizes
        page.screenshot(path=str(ARTIFACTS / "dashboard-wall.png"))
        # Every link opens a page for this key.
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        hrefs = set(page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"))
        for href in hrefs:
            r = httpx.get(href, cookies=cookies, follow_redirects=False)
            assert r.status_code in (200, 303), (href, r.status_code)
    finally:
        context.close()
        srv.stop()


def test_a_list_narrowed_to_some_fields_carries_only_those(
    server: Server, api_keys: dict[str, str]
) -> None:
    from api.usecases.cases import CASE_FIELDS

    worker = {"Authorization": f"Bearer {api_keys['grid_worker:510904']}"}
    lon, lat = point_inside(ANJU, 800, 0.61)
    made = httpx.post(
        f"{server.base}/api/v1/incidents",
        json={"lon": lon, "lat": lat, "category": "theft"},
        headers=worker,
    )
    assert made.status_code == 201
    assert set(made.json()) == CASE_FIELDS  # the declared fields are the view's own
    full = httpx.get(f"{server.base}/api/v1/incidents?limit=5", headers=worker)
    lean = httpx.get(
        f"{server.base}/api/v1/incidents?limit=5&fields=code,status,reported_at", headers=worker
    )
    assert lean.status_code == 200 and lean.json()["items"]
    assert all(set(i) == {"code", "status", "reported_at"} for i in lean.json()["items"])
    assert len(lean.content) * 5 < len(full.content)
    bad = httpx.get(f"{server.base}/api/v1/incidents?fields=code,secret", headers=worker)
    assert bad.status_code == 422 and "code" in bad.json()["detail"]["valid"]
