"""Access by role and side, redaction, the audit trail's integrity, and request limits."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tests.conftest import bearer
from tests.geo import ANJU, TONGNAN, point_inside

ROOT = Path(__file__).resolve().parents[1]
EXEMPT = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def rule_of(route: APIRoute) -> Any:
    """The access rule declared on a route (found among its dependencies), or None."""
    stack = list(route.dependant.dependencies)
    while stack:
        d = stack.pop()
        rule = getattr(d.call, "access_rule", None)
        if rule is not None:
            return rule
        stack.extend(d.dependencies)
    return None


def api_routes(app) -> list[APIRoute]:  # type: ignore[no-untyped-def]
    """Every APIRoute of the app, including those of included routers (FastAPI >= 0.160 keeps
    them behind an inclusion wrapper)."""
    out: list[APIRoute] = []
    stack = list(app.routes)
    while stack:
        r = stack.pop(0)
        if isinstance(r, APIRoute):
            out.append(r)
        elif getattr(r, "original_router", None) is not None:
            stack.extend(r.original_router.routes)
    return out


@pytest.fixture()
def app(client):  # type: ignore[no-untyped-def]
    return client.app


def test_every_route_declares_an_access_rule(app):
    missing = [
        f"{sorted(r.methods)} {r.path}"
        for r in api_routes(app)
        if r.path not in EXEMPT and rule_of(r) is None
    ]
    assert missing == [], f"routes without an access rule: {missing}"


PRINCIPALS = [
    "anonymous",
    "admin",
    "feed",
    "operator:510904",
    "operator:500152",
    "grid_worker:510904",
    "team_member:500152",
]


def headers_for(name: str, api_keys: dict[str, str]) -> dict[str, str]:
    return {} if name == "anonymous" else bearer(api_keys[name])


def test_the_role_by_endpoint_matrix_follows_each_routes_rule(app, client, api_keys):
    case = client.post(
        "/api/v1/incidents",
        json={
            "lon": point_inside(ANJU, 300)[0],
            "lat": point_inside(ANJU, 300)[1],
            "category": "theft",
        },
    ).json()
    spec = client.get("/openapi.json").json()
    routes = {(m, r.path): r for r in api_routes(app) for m in r.methods}
    checked = 0
    for path, ops in spec["paths"].items():
        for method in ops:
            route = routes.get((method.upper(), path))
            if route is None or path in EXEMPT:
                continue
            rule = rule_of(route)
            assert rule is not None, f"{method} {path} has no access rule"
            url = re.sub(r"\{[^}]+\}", lambda m: case["id"] if "case" in m.group(0) else "x", path)
            for who in PRINCIPALS:
                role = None if who == "anonymous" else who.split(":")[0]
                allowed = (
                    rule.anyone
                    or (role in rule.roles)
                    or (role is None and rule.public_feed and app.state.public_feeds)
                )
                r = client.request(
                    method.upper(),
                    url,
                    headers={"Authorization": ""} | headers_for(who, api_keys),
                    json={},
                )
                denied = r.status_code in (401, 403)
                assert denied != allowed, (method, path, who, r.status_code, r.text[:200])
                if denied:
                    body = r.json()
                    code = (
                        body[0]["jointgrid"]["code"]
                        if path.startswith("/open311")
                        else body["code"]
                    )
                    assert code in ("unauthenticated", "forbidden")
                checked += 1
    assert checked > 50


# What each role may do, written out independently of the routes' declarations.
EXPECTED = {
    ("POST", "/api/v1/incidents"): {"admin", "operator", "grid_worker", "team_member"},
    ("POST", "/api/v1/incidents/{case_id}/transitions"): {"admin", "operator", "team_member"},
    ("GET", "/api/v1/incidents"): {"admin", "operator", "grid_worker", "team_member"},
    ("GET", "/api/v1/locate"): {"admin", "operator", "grid_worker", "team_member"},
    ("GET", "/healthz"): {"anonymous", "admin", "feed", "operator", "grid_worker", "team_member"},
}


def test_declared_rules_match_the_written_policy(app):
    routes = {(m, r.path): r for r in api_routes(app) for m in r.methods}
    for key, roles in EXPECTED.items():
        rule = rule_of(routes[key])
        got = (
            {"anonymous", "admin", "feed", "operator", "grid_worker", "team_member"}
            if rule.anyone
            else set(rule.roles)
        )
        assert got == roles, key


def anon(client: TestClient) -> dict[str, str]:
    return {"Authorization": ""}


def test_no_key_is_401_with_the_contract_body(client):
    r = client.get("/api/v1/incidents", headers=anon(client))
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = client.get("/api/v1/incidents", headers={"Authorization": "Bearer jg_nope_nope"})
    assert r.status_code == 401 and "unknown" in r.json()["message"]
    r = client.get("/api/v1/incidents", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


def report_as(client, api_keys, who, side, metres, category="land_dispute", fraction=0.4):  # type: ignore[no-untyped-def]
    lon, lat = point_inside(side, metres, fraction)
    r = client.post(
        "/api/v1/incidents",
        json={
            "lon": lon,
            "lat": lat,
            "category": category,
            "reporter": {"name": "R. Porter", "phone": "000-1"},
        },
        headers=bearer(api_keys[who]),
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_operators_see_their_side_and_shared_cases_only(client, api_keys):
    anju_only = report_as(client, api_keys, "grid_worker:510904", ANJU, 5000, "fire")
    shared = report_as(client, api_keys, "grid_worker:510904", ANJU, 300)
    assert anju_only["sides"] == [ANJU] and set(shared["sides"]) == {ANJU, TONGNAN}
    tong = bearer(api_keys["operator:500152"])
    assert client.get(f"/api/v1/incidents/{anju_only['id']}", headers=tong).status_code == 404
    assert (
        client.get(f"/api/v1/incidents/{anju_only['id']}/events", headers=tong).status_code == 404
    )
    assert client.get(f"/api/v1/incidents/{shared['id']}", headers=tong).status_code == 200
    listed = {
        c["id"] for c in client.get("/api/v1/incidents?limit=1000", headers=tong).json()["items"]
    }
    assert shared["id"] in listed and anju_only["id"] not in listed
    # a case that does not exist answers exactly like one that is not visible
    missing = client.get("/api/v1/incidents/00000000-0000-0000-0000-000000000000", headers=tong)
    hidden = client.get(f"/api/v1/incidents/{anju_only['id']}", headers=tong)
    assert missing.status_code == hidden.status_code == 404
    assert missing.json()["message"] == hidden.json()["message"]


def test_an_anju_operator_cannot_act_for_tongnan(client, api_keys):
    shared = report_as(client, api_keys, "grid_worker:510904", ANJU, 300)
    r = client.post(
        f"/api/v1/incidents/{shared['id']}/transitions",
        json={"action": "accept", "side": TONGNAN},
        headers=bearer(api_keys["operator:510904"]),
    )
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = client.post(
        f"/api/v1/incidents/{shared['id']}/transitions",
        json={"action": "accept", "side": ANJU},
        headers=bearer(api_keys["operator:510904"]),
    )
    assert r.status_code == 200
    r = client.post(
        f"/api/v1/incidents/{shared['id']}/transitions",
        json={"action": "dispatch", "side": ANJU},
        headers=bearer(api_keys["grid_worker:510904"]),
    )
    assert r.status_code == 403


def test_grid_workers_read_only_their_own_reports(client, api_keys):
    mine = report_as(client, api_keys, "grid_worker:510904", ANJU, 300)
    other = report_as(client, api_keys, "operator:510904", ANJU, 300, fraction=0.41)
    gw = bearer(api_keys["grid_worker:510904"])
    assert client.get(f"/api/v1/incidents/{mine['id']}", headers=gw).status_code == 200
    assert client.get(f"/api/v1/incidents/{other['id']}", headers=gw).status_code == 404
    ids = {c["id"] for c in client.get("/api/v1/incidents", headers=gw).json()["items"]}
    assert mine["id"] in ids and other["id"] not in ids


def test_team_members_see_the_cases_of_their_team(client, api_keys):
    team = api_keys["team:500152"]
    tm = bearer(api_keys["team_member:500152"])
    listed = client.get("/api/v1/incidents?limit=1000", headers=tm).json()["items"]
    assert all(any(t["code"] == team for t in c["teams"]) for c in listed)


def test_reporter_identity_only_for_admins_and_operators_of_an_involved_side(client, api_keys):
    shared = report_as(client, api_keys, "grid_worker:510904", TONGNAN, 300, "theft")
    url = f"/api/v1/incidents/{shared['id']}"
    assert client.get(url).json()["reporter"]["name"] == "R. Porter"  # admin
    assert (
        client.get(url, headers=bearer(api_keys["operator:510904"])).json()["reporter"]["name"]
        == "R. Porter"
    )
    team = shared["teams"][0]["code"] if shared["teams"] else None
    if team == api_keys["team:500152"]:
        body = client.get(url, headers=bearer(api_keys["team_member:500152"])).json()
        assert body["reporter"] is None


def test_feed_keys_do_not_reach_cases(client, api_keys):
    r = client.get("/api/v1/incidents", headers=bearer(api_keys["feed"]))
    assert r.status_code == 403


def test_every_write_records_its_actor(client, api_keys):
    case = report_as(client, api_keys, "operator:510904", ANJU, 300)
    client.post(
        f"/api/v1/incidents/{case['id']}/transitions",
        json={"action": "accept", "side": ANJU},
        headers=bearer(api_keys["operator:510904"]),
    )
    events = client.get(f"/api/v1/incidents/{case['id']}/events").json()["events"]
    for e in events:
        assert (
            e["actor"]["key_id"] and e["actor"]["role"] == "operator" and e["actor"]["side"] == ANJU
        )


def test_revoked_keys_stop_working(db_url, live_client):
    from layers import keys
    from layers.db import connect

    with connect(db_url) as c:
        c.autocommit = True
        token, rec = keys.create(c, role="operator", side=ANJU, name="to revoke")
        assert live_client.get("/api/v1/catalogue", headers=bearer(token)).status_code == 200
        keys.revoke(c, rec["id"])
    live_client.app.state.key_cache.entries.clear()  # the server's 10-second cache
    assert live_client.get("/api/v1/catalogue", headers=bearer(token)).status_code == 401


def test_cli_creates_a_key_once_and_stores_only_its_hash(db_url):
    env = {**os.environ, "DATABASE_URL": db_url}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "apikey",
            "create",
            "--role",
            "operator",
            "--side",
            TONGNAN,
            "--name",
            "cli test",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("jg_")
    with psycopg.connect(db_url) as c:
        stored = c.execute(
            "SELECT secret_hash FROM api_keys WHERE id = %s", (token.split("_")[1],)
        ).fetchone()
        dump = c.execute("SELECT string_agg(t::text, '') FROM api_keys t").fetchone()[0]
    assert stored is not None and token.split("_", 2)[2] not in dump
    listing = subprocess.run(
        [sys.executable, "-m", "api.cli", "apikey", "list"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert token.split("_")[1] in listing.stdout and token.split("_", 2)[2] not in listing.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "api.cli", "apikey", "create", "--role", "operator"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert bad.returncode == 2 and "--side" in bad.stderr and "Traceback" not in bad.stderr


def test_the_audit_trail_is_hash_chained_and_tampering_is_found(client, conn, api_keys):
    from layers.incidents import verify_chain

    case = report_as(client, api_keys, "operator:510904", ANJU, 300)
    client.post(
        f"/api/v1/incidents/{case['id']}/transitions", json={"action": "accept", "side": ANJU}
    )
    assert verify_chain(conn)["breaks"] == []
    # An owner with the trigger switched off rewrites history; the chain shows it.
    conn.execute("ALTER TABLE incident_events DISABLE TRIGGER incident_events_no_update")
    conn.execute(
        "UPDATE incident_events SET note = 'nothing happened' WHERE incident_id = %s AND seq = 2",
        (case["id"],),
    )
    conn.execute("ALTER TABLE incident_events ENABLE TRIGGER incident_events_no_update")
    breaks = verify_chain(conn)["breaks"]
    assert [(b["code"], b["seq"]) for b in breaks] == [(case["code"], 2)]


def test_the_application_role_cannot_rewrite_the_trail(conn, client, api_keys):
    case = report_as(client, api_keys, "operator:510904", ANJU, 300)
    conn.execute("ALTER TABLE incident_events DISABLE TRIGGER incident_events_no_update")
    conn.execute("SET LOCAL ROLE jointgrid_app")
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"),
        conn.transaction(),
    ):
        conn.execute("UPDATE incident_events SET note = 'x' WHERE incident_id = %s", (case["id"],))
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"),
        conn.transaction(),
    ):
        conn.execute("DELETE FROM incident_events WHERE incident_id = %s", (case["id"],))
    conn.execute(
        "INSERT INTO incident_events (incident_id, side, seq, action, to_status)"
        " VALUES (%s, %s, 99, 'note', 'reported')",
        (case["id"], ANJU),
    )  # appending is fine


def test_server_connections_work_as_the_application_role(live_client, db_url):
    pool = live_client.app.state.pool
    with pool.connection() as c:
        assert c.execute("SELECT current_user AS u").fetchone()["u"] == "jointgrid_app"


def test_oversized_body_is_413(client):
    r = client.post(
        "/api/v1/incidents",
        content=b"{" + b" " * (1_048_576 + 10) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


def test_oversized_chunked_body_is_413(client):
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b" " * 100_000

    r = client.post(
        "/api/v1/incidents", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413


@pytest.mark.parametrize(
    "hostile",
    [
        "'; DROP TABLE incidents; --",
        "../../etc/passwd",
        "a\x00b",
        "x" * 60_000,
        "1 OR 1=1",
    ],
)
@pytest.mark.parametrize(
    "param", ["status", "category", "side", "mechanism", "bbox", "since", "cursor"]
)
def test_hostile_filter_strings_get_4xx_and_change_nothing(client, conn, param, hostile):
    before = conn.execute("SELECT count(*) AS n FROM incidents").fetchone()["n"]
    r = client.get("/api/v1/incidents", params={param: hostile})
    assert 400 <= r.status_code < 500 or (param == "side" and r.status_code == 200), r.text[:200]
    if r.status_code != 200:
        assert set(r.json()) == {"code", "message", "detail"}
    assert conn.execute("SELECT count(*) AS n FROM incidents").fetchone()["n"] == before
    assert conn.execute("SELECT to_regclass('incidents') IS NOT NULL AS ok").fetchone()["ok"]


def sign_in(client: TestClient, token: str) -> str:
    """Sign in through the form as a browser would; return the session's CSRF token."""
    page = client.get("/login?next=/report", headers={"Authorization": ""})
    assert page.status_code == 200
    form_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post(
        "/login",
        data={"key": token, "csrf_token": form_token, "next": "/report"},
        headers={"Authorization": ""},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/report"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    report = client.get("/report", headers={"Authorization": ""})
    assert report.status_code == 200
    return re.search(r'name="csrf-token" content="([^"]+)"', report.text).group(1)  # type: ignore[union-attr]


def test_pages_send_browsers_to_sign_in(client):
    r = client.get(
        "/map", headers={"Authorization": "", "Accept": "text/html"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fmap"
    api = client.get("/api/v1/incidents", headers={"Authorization": "", "Accept": "text/html"})
    assert api.status_code == 401  # APIs answer, they do not redirect


def test_sign_in_sets_a_session_and_forms_need_the_csrf_token(client, api_keys):
    csrf = sign_in(client, api_keys["grid_worker:510904"])
    lon, lat = point_inside(ANJU, 300)
    body = {"lon": lon, "lat": lat, "category": "theft"}
    no_token = client.post("/api/v1/incidents", json=body, headers={"Authorization": ""})
    assert no_token.status_code == 403 and "CSRF" in no_token.json()["message"]
    ok = client.post(
        "/api/v1/incidents", json=body, headers={"Authorization": "", "X-CSRF-Token": csrf}
    )
    assert ok.status_code == 201
    assert client.get("/map", headers={"Authorization": ""}).status_code == 403  # a grid worker
    out = client.post(
        "/logout", data={"csrf_token": csrf}, headers={"Authorization": ""}, follow_redirects=False
    )
    assert out.status_code == 303
    client.app.state.key_cache.entries.clear()
    assert client.get("/api/v1/catalogue", headers={"Authorization": ""}).status_code == 401


def test_sign_in_refuses_bad_keys_and_forged_forms(client):
    page = client.get("/login", headers={"Authorization": ""})
    form_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    bad = client.post(
        "/login",
        data={"key": "jg_no_no", "csrf_token": form_token},
        headers={"Authorization": ""},
        follow_redirects=False,
    )
    assert bad.status_code == 401 and "unknown" in bad.text
    client.cookies.clear()
    forged = client.post(
        "/login",
        data={"key": "x", "csrf_token": "guess"},
        headers={"Authorization": ""},
        follow_redirects=False,
    )
    assert forged.status_code == 403


def test_sign_in_never_redirects_off_the_server(client, api_keys):
    page = client.get("/login", headers={"Authorization": ""})
    form_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post(
        "/login",
        data={
            "key": api_keys["operator:510904"],
            "csrf_token": form_token,
            "next": "//evil.example/x",
        },
        headers={"Authorization": ""},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/map"


def test_operators_see_only_their_cases_on_the_map(client, api_keys):
    anju_only = report_as(client, api_keys, "grid_worker:510904", ANJU, 5000, "fire")
    tong = bearer(api_keys["operator:500152"])
    r = client.get(f"/map/popup/{anju_only['id']}", headers=tong)
    assert r.status_code == 404
    assert client.get(f"/map/popup/{anju_only['id']}").status_code == 200  # admin
    stats_t = client.get("/api/v1/stats", headers=tong).json()
    stats_a = client.get("/api/v1/stats").json()
    assert stats_t != stats_a


def test_feeds_need_a_key_unless_public_feeds_are_on(client, api_keys):
    assert client.app.state.public_feeds is False
    r = client.get("/ogc/collections", headers={"Authorization": ""})
    assert r.status_code == 401
    for who in ("feed", "operator:500152", "admin"):
        assert client.get("/ogc/collections", headers=bearer(api_keys[who])).status_code == 200
    client.app.state.public_feeds = True
    try:
        assert client.get("/ogc/collections", headers={"Authorization": ""}).status_code == 200
        assert client.get("/api/v1/incidents", headers={"Authorization": ""}).status_code == 401
    finally:
        client.app.state.public_feeds = False


def test_public_incident_items_never_carry_reporter_or_contacts(client, api_keys):
    report_as(client, api_keys, "grid_worker:510904", ANJU, 300)
    body = client.get(
        "/ogc/collections/incidents/items?limit=1000", headers=bearer(api_keys["feed"])
    )
    assert body.status_code == 200
    text = body.text
    assert "R. Porter" not in text and "000-1" not in text
    for key in ('"reporter"', '"contacts"', '"routing"', '"description"'):
        assert key not in text
