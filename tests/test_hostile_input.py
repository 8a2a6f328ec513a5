"""Hostile input: every bad request is a 4xx in its face's error shape, never a 500.

One test per class of input that used to answer 500 (or leak, or hang up): the body's
content type, NaN and Infinity, lone surrogates, deep nesting, cursors (tampered, forged,
huge numbers), ``/map?refresh=nan``, the connection after a 500, database text in errors,
per-route body limits, the error shape of each face, and signing in while the database is
down. Requests go to the real app on a real PostGIS; the keep-alive test runs a real server.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import psycopg
import pytest
from fastapi import Request

from api import cursors
from gis.errors import Conflict, InvalidInput
from layers.db import translate_errors
from layers.errors import Unavailable
from layers.registry import REGISTRY
from tests.geo import ANJU, point_inside

LON, LAT = point_inside(ANJU, 600, 0.5)
GOOD = {"lon": LON, "lat": LAT, "category": "land_dispute"}
JSON_ROUTES = ["/api/v1/incidents", "/api/v1/route", "/api/v1/incidents/x/transitions"]
PG_WORDS = (
    "invalid input syntax",
    "out of range for type",
    "violates",
    "Key (",
    "DETAIL",
    "psycopg",
    "port ",
    "server at",
    "timestamp with time zone",
    "relation ",
)


def api_shape(r: Any) -> dict[str, Any]:
    body = r.json()
    assert isinstance(body, dict) and set(body) == {"code", "message", "detail"}, r.text
    assert isinstance(body["code"], str) and isinstance(body["message"], str)
    return body


def ogc_shape(r: Any) -> dict[str, Any]:
    body = r.json()
    assert isinstance(body, dict) and {"code", "description"} <= set(body), r.text
    assert isinstance(body["description"], str)
    return body


def open311_shape(r: Any) -> dict[str, Any]:
    body = r.json()
    assert isinstance(body, list) and len(body) == 1, r.text
    assert body[0]["code"] == r.status_code and isinstance(body[0]["description"], str)
    return body[0]


def no_db_text(r: Any) -> None:
    for word in PG_WORDS:
        assert word not in r.text, f"database text {word!r} in {r.text[:300]}"


def post_raw(client: Any, path: str, raw: bytes, ctype: str | None = "application/json") -> Any:
    headers = {"Content-Type": ctype} if ctype is not None else {}
    return client.post(path, content=raw, headers=headers)


# -- content type --------------------------------------------------------------------------


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize(
    "ctype", ["application/x-www-form-urlencoded", "text/plain", None, "multipart/form-data"]
)
def test_a_json_route_refuses_another_content_type_with_415(client, path, ctype):
    r = post_raw(client, path, json.dumps(GOOD).encode(), ctype)
    if path == "/api/v1/incidents" and ctype == "multipart/form-data":
        # Reports take multipart too (photos): a JSON body called multipart is a broken form.
        assert 400 <= r.status_code < 500 and r.json()["code"], r.text
        return
    assert r.status_code == 415, r.text
    body = api_shape(r)
    assert body["code"] == "unsupported_media_type" and "application/json" in body["message"]


def test_json_with_a_charset_or_a_json_suffix_is_read(client):
    for ctype in ("application/json; charset=utf-8", "application/geo+json"):
        r = post_raw(client, "/api/v1/route", json.dumps(GOOD).encode(), ctype)
        assert r.status_code == 200, r.text


# -- NaN, Infinity, huge numbers -----------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        f'{{"lon": {LON}, "lat": {LAT}, "category": NaN}}',
        f'{{"lon": NaN, "lat": {LAT}, "category": "theft"}}',
        f'{{"lon": {LON}, "lat": Infinity, "category": "theft"}}',
        f'{{"lon": -Infinity, "lat": {LAT}, "category": "theft"}}',
        f'{{"lon": 1e400, "lat": {LAT}, "category": "theft"}}',
        f'{{"lon": {LON}, "lat": {LAT}, "category": "theft", "description": NaN}}',
        f'{{"lon": {LON}, "lat": {LAT}, "category": "theft", "severity": Infinity}}',
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/incidents", "/api/v1/route"])
def test_nan_and_infinity_anywhere_are_a_400(client, path, raw):
    r = post_raw(client, path, raw.encode())
    assert r.status_code == 400, r.text
    assert api_shape(r)["code"] == "invalid_json"


def test_nan_in_a_transition_is_a_400(client):
    r = post_raw(client, "/api/v1/incidents/x/transitions", b'{"action": NaN, "side": "510904"}')
    assert r.status_code == 400 and api_shape(r)["code"] == "invalid_json"


def test_nan_as_text_in_a_number_field_is_refused_not_a_500(client):
    for value in ("NaN", "Infinity", "-inf", "1e999"):
        r = client.post("/api/v1/route", json={**GOOD, "lon": value})
        assert 400 <= r.status_code < 500, r.text
        api_shape(r)


# -- lone surrogates -----------------------------------------------------------------------

SURROGATE_BODIES = [
    ("/api/v1/incidents", '{"lon": %s, "lat": %s, "category": "theft", "description": "a\\ud800"}'),
    ("/api/v1/incidents", '{"lon": %s, "lat": %s, "category": "\\ud800"}'),
    (
        "/api/v1/route",
        '{"lon": %s, "lat": %s, "category": "theft", "reporter": {"name": "\\udfff"}}',
    ),
    ("/api/v1/route", '{"lon": %s, "lat": %s, "category": "theft", "parties_sides": ["\\ud800"]}'),
    ("/api/v1/route", '{"lon": %s, "lat": %s, "category": "theft", "\\ud800": 1}'),
]


@pytest.mark.parametrize(("path", "template"), SURROGATE_BODIES)
def test_a_lone_surrogate_in_any_string_is_a_400(client, path, template):
    raw = (template % (LON, LAT)).encode()
    r = post_raw(client, path, raw)
    assert r.status_code == 400, r.text
    body = api_shape(r)
    assert body["code"] == "invalid_json" and "surrogate" in body["message"]


def test_a_lone_surrogate_in_a_transition_note_is_a_400(client):
    made = client.post("/api/v1/incidents", json=GOOD)
    assert made.status_code == 201, made.text
    raw = b'{"action": "accept", "side": "510904", "note": "\\ud800"}'
    r = post_raw(client, f"/api/v1/incidents/{made.json()['id']}/transitions", raw)
    assert r.status_code == 400 and api_shape(r)["code"] == "invalid_json"


def test_raw_surrogate_bytes_are_a_400(client):
    raw = b'{"lon": 105.6, "lat": 30.2, "category": "theft", "description": "\xed\xa0\x80"}'
    r = post_raw(client, "/api/v1/route", raw)
    assert r.status_code == 400 and api_shape(r)["code"] == "invalid_json"


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/incidents?category=%ED%A0%80",
        "/api/v1/incidents?side=%ED%A0%80&status=%ED%A0%80",
        "/api/v1/locate?lon=105.6&lat=30.2&crs=%ED%A0%80",
        "/api/v1/incidents/%ED%A0%80",
        "/ogc/collections/incidents/items?status=%ED%A0%80",
        "/ogc/collections/incidents/items?filter=status%3D%27%ED%A0%80%27",
        "/open311/v2/requests.json?service_code=%ED%A0%80",
        "/open311/v2/requests/%ED%A0%80.json",
    ],
)
def test_surrogate_bytes_in_query_and_path_are_never_a_500(client, url):
    # a guard: Starlette decodes percent-escapes with replacement characters
    r = client.get(url)
    assert r.status_code < 500, r.text


@pytest.mark.parametrize(
    ("cid", "prop"), [("incidents", "status"), ("grids", "code"), ("teams", "code")]
)
def test_a_lone_surrogate_in_a_cql2_json_filter_is_a_400(client, cid, prop):
    # a guard: a JSON escape inside a query value (the CQL2 parser refuses it; were it to
    # reach the driver, layers/db.py turns it into InvalidInput, see below)
    f = json.dumps({"op": "=", "args": [{"property": prop}, "a\\ud800"]}).replace("\\\\", "\\")
    r = client.get(
        f"/ogc/collections/{cid}/items", params={"filter-lang": "cql2-json", "filter": f}
    )
    assert r.status_code == 400, r.text
    ogc_shape(r)


# -- depth ---------------------------------------------------------------------------------


def test_an_extent_nested_300_deep_is_a_400(client):
    deep = "[" * 300 + "]" * 300
    raw = json.dumps({**GOOD, "extent": {"type": "Polygon", "coordinates": "X"}})
    raw = raw.replace('"X"', deep)
    for path in ("/api/v1/incidents", "/api/v1/route"):
        r = post_raw(client, path, raw.encode())
        assert r.status_code == 400, r.text
        body = api_shape(r)
        assert body["code"] == "invalid_json" and "deep" in body["message"]


def test_brackets_inside_strings_do_not_count_as_depth(client):
    text = '[{"\\"' * 100  # brackets, quotes and backslashes, all inside one string
    r = client.post("/api/v1/route", json={**GOOD, "description": text})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("depth", [31, 32, 33])
def test_the_depth_limit_is_exact(depth):
    from api.limits import MAX_JSON_DEPTH, strict_json

    assert MAX_JSON_DEPTH == 32
    for raw in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        if depth <= 32:
            strict_json(raw)
        else:
            with pytest.raises(InvalidInput, match="nested too deeply"):
                strict_json(raw)


def test_a_cursor_of_5000_deep_json_is_invalid_cursor(client):
    deep = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=")
    for cursor in (deep, deep + ".AAAA"):
        r = client.get("/api/v1/incidents", params={"cursor": cursor})
        assert r.status_code == 400, r.text
        assert api_shape(r)["code"] == "invalid_cursor"


# -- cursors -------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _values(cursor: str) -> list[str]:
    payload = cursor.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_the_case_list_cursor_is_signed_and_a_tampered_one_is_refused(client):
    for _ in range(3):
        assert client.post("/api/v1/incidents", json=GOOD).status_code == 201
    page = client.get("/api/v1/incidents", params={"limit": 1}).json()
    cursor = page["next_cursor"]
    assert client.get("/api/v1/incidents", params={"limit": 1, "cursor": cursor}).status_code == 200
    payload, tag = cursor.split(".")
    forged = [
        _b64(json.dumps(["xx", "yy"]).encode()),  # the old unsigned form
        _b64(json.dumps(["xx", "yy"]).encode()) + "." + tag,  # someone else's tag
        payload + "." + _b64(b"\0" * 16),  # a made-up tag
        payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + tag,  # one byte changed
        cursors.sign(["xx", "yy"], key=b"not the server's secret, no....."),
        cursor + "x",
        "",
    ]
    for bad in forged[:-1]:
        r = client.get("/api/v1/incidents", params={"cursor": bad})
        assert r.status_code == 400, (bad, r.text)
        assert api_shape(r)["code"] == "invalid_cursor"
        no_db_text(r)


def test_a_signed_cursor_with_values_postgres_refuses_leaks_no_database_text(client):
    # Our own secret, our own format, values the database cannot read: our words only.
    r = client.get("/api/v1/incidents", params={"cursor": cursors.sign(["xx", "yy"])})
    assert r.status_code in (400, 422), r.text
    api_shape(r)
    no_db_text(r)


@pytest.mark.parametrize("cid", sorted(REGISTRY))
def test_ogc_cursors_with_huge_numbers_are_refused_on_every_collection(client, cid):
    huge = [str(2**64), str(2**64 - 1) + "0", "9" * 5000, "-1", "1e999", "NaN"]
    for n in huge:
        for values in (["n", n, "a"], ["n", n], ["p", n, "a", "b"]):
            for cursor in (_b64(json.dumps(values).encode()), cursors.sign(values, key=b"x" * 32)):
                r = client.get(f"/ogc/collections/{cid}/items", params={"cursor": cursor})
                assert r.status_code == 400, (cid, values, r.text[:300])
                assert ogc_shape(r)["code"] == "invalid_cursor"


def test_an_ogc_cursor_carries_no_count_and_numbermatched_is_counted_again(client):
    first = client.get("/ogc/collections/grids/items", params={"limit": 5}).json()
    href = next(ln["href"] for ln in first["links"] if ln["rel"] == "next")
    cursor = parse_qs(urlparse(href).query)["cursor"][0]
    values = _values(cursor)
    assert str(first["numberMatched"]) not in values[:2]  # direction and key only
    second = client.get("/ogc/collections/grids/items", params={"limit": 5, "cursor": cursor})
    assert second.status_code == 200 and second.json()["numberMatched"] == first["numberMatched"]


def test_the_cursor_secret_is_made_once_with_mode_0600(tmp_path, monkeypatch):
    key_file = tmp_path / "var" / "cursor.key"
    monkeypatch.setenv("JOINTGRID_CURSOR_KEY_FILE", str(key_file))
    monkeypatch.delenv("JOINTGRID_CURSOR_SECRET", raising=False)
    cursors.secret.cache_clear()
    try:
        made = cursors.secret()
        assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert len(made) == 32
        cursors.secret.cache_clear()
        assert cursors.secret() == made  # kept across restarts
        monkeypatch.setenv("JOINTGRID_CURSOR_SECRET", "set by the operator")
        cursors.secret.cache_clear()
        assert cursors.secret() == b"set by the operator"
        signed = cursors.sign(["a", "b"])
        assert cursors.open_(signed, size=2) == ("a", "b")
        monkeypatch.setenv("JOINTGRID_CURSOR_SECRET", "another secret")
        cursors.secret.cache_clear()
        with pytest.raises(InvalidInput):
            cursors.open_(signed, size=2)
    finally:
        cursors.secret.cache_clear()


# -- /map?refresh= -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "1" * 5000])
def test_map_refresh_that_is_not_a_finite_number_is_a_4xx(client, value):
    r = client.get("/map", params={"refresh": value})
    assert r.status_code == 422, r.text[:300]
    assert api_shape(r)["code"] == "invalid_input"


# -- the connection after a 500 ------------------------------------------------------------


async def boom(request: Request) -> None:
    await request.body()
    raise RuntimeError("a bug")


@pytest.fixture()
def boom_server(db_url: str) -> Iterator[tuple[str, int]]:
    """The real app under uvicorn (as ``jointgrid serve`` runs it), plus routes that fail."""
    import uvicorn

    from api.app import create_app, make_pool
    from api.settings import DatabaseSettings

    pool = make_pool(DatabaseSettings(DATABASE_URL=db_url, pool_min=1, pool_max=2))  # type: ignore[call-arg]
    app = create_app(pool=pool)

    for path in ("/api/v1/boom", "/open311/boom"):
        app.add_api_route(path, boom, methods=["GET", "POST"], include_in_schema=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(10)
        pool.close()


def test_after_a_500_the_keep_alive_connection_still_works(boom_server):
    conn = http.client.HTTPConnection(*boom_server, timeout=10)
    try:
        for method, path, body in [
            ("GET", "/api/v1/boom", None),
            ("POST", "/api/v1/boom", b'{"a": 1}'),
            ("GET", "/open311/boom", None),
        ]:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            raw = r.read()
            assert r.status == 500
            closing = (r.getheader("connection") or "").lower() == "close"
            payload = json.loads(raw)
            if path.startswith("/open311"):
                assert payload[0]["code"] == 500
            else:
                assert payload["code"] == "internal_error" and "a bug" not in raw.decode()
            if closing:  # allowed by HTTP, but then it must say so: reconnect
                conn.close()
            conn.request("GET", "/healthz")
            follow = conn.getresponse()
            follow.read()
            assert follow.status == 200
    finally:
        conn.close()


# -- no database text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 'xx'::timestamptz",
        "SELECT '99999-99-99'::date",
        "SELECT 1e300::numeric::float4",
        "SELECT 2147483648::int4",
        "SELECT 1 / 0",
        "SELECT 'abc'::int",
        "SELECT 'a' || chr(0)",
        "SELECT 'not json'::jsonb",
        "SELECT '{\"a\": 1}'::jsonb -> 'x'::int",
        "SELECT ST_GeomFromText('POINT(1)')",
        "SELECT 'zz'::uuid",
        "SELECT repeat('x', 3)::varchar(1)::varchar(1) || %s",
    ],
)
def test_database_errors_are_told_in_our_words(conn, statement):
    args = ("\0",) if "%s" in statement else None
    with pytest.raises(psycopg.Error) as raw, conn.transaction():
        conn.execute(statement, args)
    said = (str(raw.value).strip().splitlines() or [""])[0]  # the database's (or driver's) text
    assert said
    with pytest.raises(InvalidInput) as info, translate_errors(), conn.transaction():
        conn.execute(statement, args)
    shown = json.dumps({"message": info.value.message, "detail": info.value.detail})
    assert said not in shown and said[:24] not in shown, shown
    assert set(info.value.detail or {}) <= {"sqlstate"}, shown
    for word in (*PG_WORDS, "xx", "zz", "abc", "not json", "int4", "float4", "numeric"):
        assert word not in shown, f"{word!r} in {shown}"


def test_constraint_and_connection_errors_are_told_in_our_words(conn, db_url):
    with pytest.raises(Conflict) as info, translate_errors(), conn.transaction():
        conn.execute("CREATE TEMP TABLE t (k int PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1), (1)")
    assert "Key (" not in json.dumps(info.value.detail) and "(k)" not in info.value.message
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unavailable) as down, translate_errors():
        psycopg.connect(f"postgresql://nobody@127.0.0.1:{port}/x", connect_timeout=2)
    shown = json.dumps({"message": down.value.message, "detail": down.value.detail})
    assert str(port) not in shown and "127.0.0.1" not in shown and "refused" not in shown


def test_a_lone_surrogate_reaching_the_driver_is_invalid_input(conn):
    with pytest.raises(InvalidInput), translate_errors():
        conn.execute("SELECT %s::text", ("\ud800",))


# -- per-route body limits -----------------------------------------------------------------


def _chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def test_per_route_body_limits(client):
    small = b'{"action": "accept", "side": "510904", "note": "' + b"x" * 20_000 + b'"}'
    r = post_raw(client, "/api/v1/incidents/x/transitions", small)
    assert r.status_code == 413, r.text
    body = api_shape(r)
    assert body["code"] == "payload_too_large" and body["detail"] == {"max_bytes": 16 * 1024}
    # the same size is fine where reports go (1 MiB): it reaches validation instead
    big_description = json.dumps({**GOOD, "description": "x" * 20_000}).encode()
    r = post_raw(client, "/api/v1/route", big_description)
    assert r.status_code == 422 and api_shape(r)["detail"][0]["field"] == "description"
    # streamed without Content-Length: counted while it arrives
    r = client.post(
        "/api/v1/incidents/x/transitions",
        content=_chunks(40_000),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413 and api_shape(r)["code"] == "payload_too_large"
    r = post_raw(client, "/api/v1/route", b" " * (1024 * 1024 + 1))
    assert r.status_code == 413 and api_shape(r)["detail"] == {"max_bytes": 1024 * 1024}


def test_body_limits_come_from_settings_first(db_url, api_keys, monkeypatch):
    from fastapi.testclient import TestClient

    from api.app import create_app, make_pool
    from api.settings import DatabaseSettings

    rules = [{"methods": ["post"], "path": "/api/v1/route", "max_bytes": 100}]
    monkeypatch.setenv("JOINTGRID_BODY_LIMITS", json.dumps(rules))
    monkeypatch.setenv("JOINTGRID_MAX_BODY_BYTES", "2000")
    pool = make_pool(DatabaseSettings(DATABASE_URL=db_url, pool_min=1, pool_max=2))  # type: ignore[call-arg]
    try:
        app = create_app(pool=pool)
        headers = {"Authorization": f"Bearer {api_keys['admin']}"}
        with TestClient(app, raise_server_exceptions=False, headers=headers) as c:
            r = c.post("/api/v1/route", json={**GOOD, "description": "x" * 200})
            assert r.status_code == 413 and r.json()["detail"] == {"max_bytes": 100}
            # the rules of api/limits.py still follow; a route no rule names gets the default
            r = c.post("/api/v1/incidents/x/transitions", content=b" " * 17_000)
            assert r.status_code == 413 and r.json()["detail"] == {"max_bytes": 16 * 1024}
            r = c.post("/api/v1/nosuch", content=b" " * 3000)
            assert r.status_code == 413 and r.json()["detail"] == {"max_bytes": 2000}
    finally:
        pool.close()


# -- error shapes per face -----------------------------------------------------------------


def test_each_face_answers_413_404_405_415_in_its_own_shape(client):
    big = b"x" * (1024 * 1024 + 1)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases = [
        (client.post("/open311/v2/requests.json", content=big, headers=form), 413, open311_shape),
        (client.get("/open311/v2/nosuch.json"), 404, open311_shape),
        (client.get("/open311/nosuch"), 404, open311_shape),
        (client.delete("/open311/v2/services.json"), 405, open311_shape),
        (
            client.post(
                "/open311/v2/requests.json",
                content=b"service_code=theft&lat=30.2&long=105.6",
                headers={"Content-Type": "text/plain"},
            ),
            400,  # GeoReport v2's own answer to a body that is not its form
            open311_shape,
        ),
        (client.post("/ogc/collections", content=big), 413, ogc_shape),
        (client.get("/ogc/nosuch"), 404, ogc_shape),
        (client.post("/ogc/collections"), 405, ogc_shape),
        (client.post("/api/v1/route", content=big), 413, api_shape),
        (client.get("/api/v1/nosuch"), 404, api_shape),
        (client.delete("/api/v1/route"), 405, api_shape),
        (
            client.post("/api/v1/route", content=b"{}", headers={"Content-Type": "text/plain"}),
            415,
            api_shape,
        ),
    ]
    for r, status, shape in cases:
        assert r.status_code == status, (r.request.method, r.request.url, r.text[:200])
        shape(r)


@pytest.mark.parametrize("status", [400, 404, 405, 413, 415, 422, 500, 503])
def test_the_one_table_of_faces_renders_every_status(status):
    from api import errors

    for path, check in [
        ("/api/v1/x", "api"),
        ("/ogc/x", "ogc"),
        ("/ogc", "ogc"),
        ("/open311/v2/x", "open311"),
        ("/ogcx", "api"),
    ]:
        face = errors.face_of(path)
        assert face.name == check
        r = errors.render(
            face,
            status,
            "some_code",
            "a message",
            {"nan": float("nan"), "big": 2**70, "s": "\ud800", "b": b"\xff"},
        )
        payload = json.loads(r.body)
        if check == "open311":
            assert isinstance(payload, list) and payload[0]["description"] == "a message"
            assert payload[0]["code"] == r.status_code
        elif check == "ogc":
            assert payload["code"] == "some_code" and payload["description"] == "a message"
            assert r.status_code == (400 if status == 422 else status)
        else:
            assert set(payload) == {"code", "message", "detail"}
        if r.status_code == 503:
            assert r.headers["retry-after"]


# -- sign-in while the database is down ----------------------------------------------------


def test_sign_in_while_the_database_is_down_is_a_503_with_retry_after():
    import re

    from fastapi.testclient import TestClient

    from api.app import create_app, make_pool
    from api.settings import DatabaseSettings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here: the database is down
    url = f"postgresql://jointgrid@127.0.0.1:{port}/jointgrid"
    pool = make_pool(
        DatabaseSettings(DATABASE_URL=url, pool_min=1, pool_max=1, connect_timeout_s=1)  # type: ignore[call-arg]
    )
    try:
        app = create_app(pool=pool)
        app.state.pool_timeout = 1.0
        with TestClient(app, raise_server_exceptions=False) as c:
            page = c.get("/login")
            assert page.status_code == 200
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            t0 = time.monotonic()
            r = c.post(
                "/login",
                data={"key": "jg_x_y", "csrf_token": token, "next": "/map"},
                follow_redirects=False,
            )
            assert r.status_code == 503, r.text[:300]
            assert int(r.headers["retry-after"]) > 0
            assert time.monotonic() - t0 < 10
            assert str(port) not in r.text
            r = c.post("/logout", cookies={"jg_session": "x"}, follow_redirects=False)
            assert r.status_code == 503 and r.headers["retry-after"]
    finally:
        pool.close()


def test_env_is_clean():
    # the settings tests above must not leak into later tests of this process
    assert "JOINTGRID_BODY_LIMITS" not in os.environ
