"""Headers and links that do not trust the request: security headers on every answer, no
caching of identity, a forged Host never reaches a link, sign-out ends the session."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import bearer
from tests.geo import ANJU
from tests.test_access import report_as, sign_in

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def _common(r: Any) -> None:
    for k, v in COMMON.items():
        assert r.headers.get(k) == v, (r.request.url, k, r.headers.get(k))
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/api/v1/catalogue",
        "/api/v1/incidents",
        "/api/v1/incidents/00000000-0000-4000-8000-000000000000",  # 404
        "/ogc",
        "/ogc/collections/incidents/items?limit=1",
        "/open311/v2/requests.json",
        "/map",
        "/report",
        "/dashboard",
        "/login",
        "/static/map.js",
        "/nowhere",
    ],
)
def test_every_answer_carries_the_security_headers(client, path):
    _common(client.get(path))


def test_refusals_carry_them_too(client):
    _common(client.get("/api/v1/incidents", headers={"Authorization": ""}))  # 401
    _common(client.post("/api/v1/incidents", content=b"x" * 2_000_000))  # 413


def test_identity_and_contacts_are_never_cached(client, api_keys):
    case = report_as(client, api_keys, "grid_worker:510904", ANJU, 300)
    for path in (
        f"/api/v1/incidents/{case['id']}",
        f"/api/v1/incidents/{case['id']}/events",
        "/api/v1/incidents",
        f"/map/popup/{case['id']}",
        "/map/data/incidents?z=18&bbox=100,20,110,40",
        "/map",
        "/report",
        "/dashboard",
        "/api/v1/stats",
    ):
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[:200])
        assert r.headers["cache-control"] == "no-store", path
    post = client.post(
        "/api/v1/incidents",
        json={
            "lon": case["location"]["coordinates"][0],
            "lat": case["location"]["coordinates"][1],
            "category": "theft",
            "reporter": {"name": "R. Porter"},
        },
    )
    assert post.status_code == 201 and post.headers["cache-control"] == "no-store"
    # the browser libraries stay cacheable
    assert "no-store" not in client.get("/static/map.js").headers.get("cache-control", "")


def test_a_policy_fits_what_the_answer_is(client):
    """A page gets the nonce policy; data and files, which create no document, the strictest
    one; the service worker, whose own fetches its script's policy governs, this origin only."""
    page = client.get("/report").headers["content-security-policy"]
    assert "'nonce-" in page and "script-src 'self'" in page
    for path in ("/api/v1/catalogue", "/static/report.css", "/map/data/layers/districts?z=8"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    worker = client.get("/report-sw.js")
    assert worker.headers["content-security-policy"] == "default-src 'self'; frame-ancestors 'none'"
    # a revalidation has no body: the browser keeps the headers stored with the answer
    again = client.get("/report-sw.js", headers={"If-None-Match": worker.headers["etag"]})
    assert again.status_code == 304 and not again.content
    assert "content-security-policy" not in again.headers
    assert again.headers["etag"] == worker.headers["etag"]
    changed = client.get("/report-sw.js", headers={"If-None-Match": '"another"'})
    assert changed.status_code == 200 and changed.text == worker.text


def test_each_page_gets_its_own_nonce_and_every_inline_script_carries_it(client):
    seen = set()
    for path in ("/map", "/map", "/report", "/dashboard", "/login"):
        r = client.get(path)
        nonce = re.search(r"'nonce-([^']+)'", r.headers["content-security-policy"]).group(1)  # type: ignore[union-attr]
        assert nonce not in seen
        seen.add(nonce)
        for tag in re.findall(r"<(?:script|style)\b[^>]*>", r.text):
            if tag.startswith("<script") and ("src=" in tag or "application/json" in tag):
                continue
            assert f'nonce="{nonce}"' in tag, (path, tag)
        assert not re.search(r"<[^>]+\sstyle=", r.text), path  # inline style attributes
        assert not re.search(r"<[^>]+\son[a-z]+=", r.text), path  # inline event handlers


# -- a forged Host ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/ogc",
        "/ogc/collections",
        "/ogc/collections/incidents",
        "/ogc/collections/grids/items?limit=2",
        "/ogc/api",
    ],
)
def test_a_forged_host_never_reaches_a_link(client, path):
    r = client.get(path, headers={"Host": "evil.example"})
    assert "evil.example" not in r.text
    assert r.status_code == 400, r.text[:300]
    own = client.get(path)
    assert own.status_code == 200 and "http://testserver/ogc" in own.text


def test_links_follow_the_configured_public_base_url(client, monkeypatch):
    from api.settings import AccessSettings

    monkeypatch.setattr(
        client.app.state, "access", AccessSettings(public_base_url="https://grid.example.org/")
    )
    r = client.get("/ogc/collections/grids/items?limit=2", headers={"Host": "evil.example"})
    assert r.status_code == 200
    assert "evil.example" not in r.text
    hrefs = [link["href"] for link in r.json()["links"]]
    assert hrefs and all(h.startswith("https://grid.example.org/ogc/") for h in hrefs), hrefs


def test_a_bad_public_base_url_is_refused_at_start():
    from pydantic import ValidationError

    from api.settings import AccessSettings

    with pytest.raises(ValidationError):
        AccessSettings(public_base_url="grid.example.org")


# -- sign-out --------------------------------------------------------------------------------


def test_sign_out_without_its_token_changes_nothing(client: TestClient, api_keys):
    sign_in(client, api_keys["operator:510904"])
    r = client.post("/logout", headers={"Authorization": ""}, follow_redirects=False)
    assert r.status_code == 403
    assert "jg_session" not in r.headers.get("set-cookie", "")  # the cookie is kept...
    assert client.get("/map", headers={"Authorization": ""}).status_code == 200  # ...and valid


def test_sign_out_ends_the_session_at_once_and_the_old_cookie_is_refused(client, api_keys):
    csrf = sign_in(client, api_keys["operator:510904"])
    cookie = client.cookies["jg_session"]
    assert client.get("/map", headers={"Authorization": ""}).status_code == 200  # now cached
    out = client.post(
        "/logout", data={"csrf_token": csrf}, headers={"Authorization": ""}, follow_redirects=False
    )
    assert out.status_code == 303 and out.headers["location"] == "/login"
    client.cookies.clear()
    replay = client.get(
        "/api/v1/incidents", headers={"Authorization": "", "Cookie": f"jg_session={cookie}"}
    )
    assert replay.status_code == 401


def test_every_signed_in_page_has_a_sign_out_button(client, api_keys):
    csrf = sign_in(client, api_keys["operator:510904"])
    for path in ("/map", "/report", "/dashboard"):
        html = client.get(path, headers={"Authorization": ""}).text
        form = re.search(
            r'<form class="jg-signout" method="post" action="/logout">(.*?)</form>', html
        )
        assert form, path
        assert f'name="csrf_token" value="{csrf}"' in form.group(1), path
    # a Bearer key has no session to end: no button
    assert 'class="jg-signout"' not in client.get("/map", headers=bearer(api_keys["admin"])).text


def test_a_configured_tile_server_is_allowed_for_images_only():
    from api.security import _tile_origin, policy

    assert (
        _tile_origin("https://{s}.tile.example.org/{z}/{x}/{y}.png") == "https://*.tile.example.org"
    )
    assert _tile_origin("http://10.0.0.5:8080/tiles/{z}/{x}/{y}.png") == "http://10.0.0.5:8080"
    assert _tile_origin(None) is None and _tile_origin("/local/{z}/{x}/{y}.png") is None
    csp = policy("n0nce", tiles_origin="https://*.tile.example.org")
    img = next(d for d in csp.split("; ") if d.startswith("img-src"))
    assert "https://*.tile.example.org" in img
    assert csp.count("tile.example.org") == 1  # not for scripts, styles or connections
