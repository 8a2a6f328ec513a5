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
from tests.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, cases_with_key

pytestmark = pytest.mark.browser

PHONE = {"width": 360, "height": 740}
QUEUE = "jointgrid.report.queue.v1"


class Server:
    """``jointgrid serve`` on a fixed port, which the test may stop and start again."""

    def __init__(self, db_url: str, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db_url = db_url
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "DATABASE_URL": self.db_url, "JOINTGRID_ESCALATION_INTERVAL_S": "0"}
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


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
        page.wait_for_function(
            "document.querySelectorAll('#map path.leaflet-interactive, #map svg path').length > 0"
        )
        # The worker's service worker is installed and controls the page after one visit.
        page.evaluate("navigator.serviceWorker.ready.then(() => true)")
        page.reload()
        page.wait_for_function("navigator.serviceWorker.controller !== null")

        # 2. A report once online.
        page.select_option("#category", "neighbor_dispute")
        page.fill("#description", "在线上报 / sent online")
        page.click("#gps")
        page.wait_for_function("document.getElementById('declared').classList.contains('set')")
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
        page.wait_for_function("document.getElementById('declared').classList.contains('set')")
        page.click("#send")
        page.locator("#queue li.queued").wait_for()
        queue = json.loads(page.evaluate(f"localStorage.getItem('{QUEUE}')"))
        assert len(queue) == 1
        key = queue[0]["key"]
        assert cases_with_key(db_url, key) == []

        server.start()
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        page.wait_for_function(
            f"JSON.parse(localStorage.getItem('{QUEUE}') || '[]').length === 0", timeout=30_000
        )
        assert len(cases_with_key(db_url, key)) == 1
    finally:
        context.close()
    assert outside == []
