"""The pages under their Content-Security-Policy, in real Chromium: they work, and the browser
reports no violation (no inline script or style without the response's nonce), and every
signed-in page signs out for real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.geo import ANJU, point_inside
from tests.test_browser import (  # noqa: F401  (fixtures)
    DESKTOP,
    PHONE,
    artifacts,
    auth,
    make_case,
    new_page,
    view_hash,
    wait_ready,
)

pytestmark = pytest.mark.browser

# Collects every CSP violation the page reports, from the first script on.
WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sample || ''));
});
"""


def _watched(b: Any, headers: dict[str, str], **options: Any) -> tuple[Any, Any, Any, list[str]]:
    context, page, seen = new_page(b, headers, **options)
    console: list[str] = []
    page.on(
        "console",
        lambda m: "Content Security Policy" in m.text and console.append(m.text),
    )
    page.add_init_script(WATCH)
    return context, page, seen, console


def _violations(page: Any, console: list[str]) -> list[str]:
    return [*page.evaluate("window.__csp"), *console]


def test_the_map_works_under_its_policy_with_no_violation(
    live_server: str,
    browser: Any,
    auth: dict[str, str],  # noqa: F811
    artifacts: Path,  # noqa: F811
) -> None:
    lon, lat = point_inside(ANJU, 300, 0.173)
    case = make_case(live_server, auth, lon, lat, "land_dispute")
    context, page, seen, console = _watched(browser, auth, viewport=DESKTOP)
    try:
        response = page.goto(f"{live_server}/map{view_hash(lon, lat, 10)}")
        csp = response.headers["content-security-policy"]
        assert "'unsafe-inline'" not in csp and "'nonce-" in csp
        wait_ready(page)  # the folium scripts ran: they carry the nonce
        page.wait_for_selector(".jg-cell-ring", timeout=10_000)  # counted cells at low zoom
        ring = page.eval_on_selector(".jg-cell-ring", "e => getComputedStyle(e).backgroundImage")
        assert "conic-gradient" in ring
        page.goto(f"{live_server}/map?status=open{view_hash(lon, lat, 18)}")
        wait_ready(page)
        marker = page.locator(f'.jg-mark[data-id="{case["id"]}"]')
        marker.wait_for(timeout=10_000)
        colour = marker.evaluate("e => getComputedStyle(e).getPropertyValue('--c').trim()")
        assert colour.startswith("#"), colour  # the mechanism's colour, applied via the CSSOM
        marker.click()
        page.locator(".leaflet-popup .jg-popup[data-id]").wait_for(timeout=10_000)
        dot = page.eval_on_selector(
            ".leaflet-popup .jg-dot", "e => getComputedStyle(e).backgroundColor"
        )
        assert dot not in ("", "rgba(0, 0, 0, 0)"), dot
        swatch = page.eval_on_selector(
            ".jg-legend .jg-key", "e => getComputedStyle(e).getPropertyValue('--c').trim()"
        )
        assert swatch.startswith("#")
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts / "map-under-csp.png"))
        assert _violations(page, console) == []
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        context.close()
    assert seen.outside() == []


@pytest.mark.parametrize("path", ["/report", "/dashboard", "/login", "/ogc/collections?f=html"])
def test_the_other_pages_work_under_their_policy_with_no_violation(
    live_server: str,
    browser: Any,
    auth: dict[str, str],  # noqa: F811
    path: str,
) -> None:
    if path == "/dashboard":  # a case, so that its tables have coloured rows
        lon, lat = point_inside(ANJU, 300, 0.19)
        make_case(live_server, auth, lon, lat, "land_dispute")
    context, page, _seen, console = _watched(browser, auth, viewport=PHONE)
    try:
        response = page.goto(f"{live_server}{path}")
        assert response.status == 200
        assert "'unsafe-inline'" not in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
        if path == "/report":  # its script ran: the map and the category list are live
            page.wait_for_selector("#report .leaflet-container, .leaflet-container")
        if path == "/login":  # its inline style applied (nonce)
            bg = page.eval_on_selector("body", "e => getComputedStyle(e).backgroundColor")
            assert bg == "rgb(244, 246, 248)", bg
        if path.startswith("/ogc"):  # its style sheet applied
            margin = page.eval_on_selector("body", "e => getComputedStyle(e).marginTop")
            assert margin == "21px", margin
        if path == "/dashboard":
            # the mechanism dots are SVG, coloured by a presentation attribute (no style)
            dots = page.eval_on_selector_all(
                "svg.dot circle", "els => els.map(e => getComputedStyle(e).fill)"
            )
            assert dots and all(d not in ("", "none", "rgb(0, 0, 0)") for d in dots), dots
        assert _violations(page, console) == []
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        context.close()


@pytest.mark.parametrize("path", ["/map", "/report", "/dashboard"])
def test_every_signed_in_page_signs_out_and_the_old_cookie_is_refused(
    live_server: str,
    browser: Any,
    api_keys: dict[str, str],
    path: str,
) -> None:
    context, page, _seen, console = _watched(browser, {}, viewport=DESKTOP)
    try:
        page.goto(f"{live_server}/login?next={path}")
        page.fill("#key", api_keys["operator:510904"])
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server}{path}*")
        cookie = next(c for c in context.cookies() if c["name"] == "jg_session")["value"]
        button = page.locator("form.jg-signout button")
        assert button.count() == 1 and button.is_visible()
        button.click()
        page.wait_for_url(f"{live_server}/login*")
        assert not [c for c in context.cookies() if c["name"] == "jg_session"]
        assert _violations(page, console) == []
    finally:
        context.close()
    replay = httpx.get(
        f"{live_server}/api/v1/incidents", headers={"Cookie": f"jg_session={cookie}"}, timeout=10
    )
    assert replay.status_code == 401


def test_the_api_document_page_works_from_this_server_under_its_policy(
    live_server: str,
    browser: Any,
) -> None:
    context, page, seen, console = _watched(browser, {}, viewport=DESKTOP)
    try:
        page.goto(f"{live_server}/docs")
        page.wait_for_selector(".opblock-summary", timeout=20_000)  # the operations are listed
        assert page.locator(".opblock").count() > 10
        assert _violations(page, console) == []
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        context.close()
    assert seen.outside() == [], seen.outside()
