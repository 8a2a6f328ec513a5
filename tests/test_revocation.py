"""A revoked key or a closed session stops working at once, in every server process.

Two real servers (``jointgrid serve``) share the test database; each caches key look-ups, and
each must drop them the moment a key is revoked (by the CLI, in a third process) or a session
is signed out on the other server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import bearer
from tests.geo import ANJU
from tests.scratch_cluster import ServerProcess


@pytest.fixture(scope="module")
def servers(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    logs = tmp_path_factory.mktemp("revocation")
    procs = [ServerProcess(db_url, Path(logs) / f"server{i}.log") for i in range(2)]
    try:
        for p in procs:
            p.start()
        yield [p.base for p in procs]
    finally:
        ServerProcess.stop_all(procs)


def _new_key(db_url: str) -> tuple[str, str]:
    from layers import keys
    from layers.db import connect

    with connect(db_url) as c:
        c.autocommit = True
        token, rec = keys.create(c, role="operator", side=ANJU, name="to revoke")
    return token, rec["id"]


def _warm(bases: list[str], token: str) -> None:
    """Use the key on every server until each has it cached (a second answer from the cache)."""
    for base in bases:
        for _ in range(3):
            r = httpx.get(f"{base}/api/v1/catalogue", headers=bearer(token), timeout=10)
            assert r.status_code == 200, r.text


# The notice itself takes a few milliseconds; the rest is this busy machine's HTTP round trips.
AT_ONCE_S = 1.0


def _until_refused(bases: list[str], headers: dict[str, str], path: str) -> list[float]:
    """Seconds until each server first refuses, polling as fast as it answers (at most 12 s)."""
    waited = []
    for base in bases:
        t0 = time.monotonic()
        while True:
            r = httpx.get(f"{base}{path}", headers=headers, timeout=10, follow_redirects=False)
            if r.status_code in (401, 303):
                waited.append(time.monotonic() - t0)
                break
            assert r.status_code == 200, r.text
            if time.monotonic() - t0 > 12:
                waited.append(float("inf"))
                break
    return waited


def test_a_key_revoked_by_the_cli_stops_at_once_on_every_server(db_url, servers):
    token, key_id = _new_key(db_url)
    _warm(servers, token)
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "apikey", "revoke", key_id],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    waited = _until_refused(servers, bearer(token), "/api/v1/catalogue")
    print(f"revoked key refused after {[round(w * 1000) for w in waited]} ms")
    # the cache kept a revoked key for up to 10 s; now it is the time the notice takes
    assert max(waited) < AT_ONCE_S, waited


def _listener_pids(conn: psycopg.Connection[Any]) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'jointgrid-revocations'"
            " AND datname = current_database()"
        )
    ]


def test_the_listener_comes_back_after_losing_the_database(db_url, servers):
    with psycopg.connect(db_url, autocommit=True) as admin:
        assert len(_listener_pids(admin)) >= 2  # one per server process
        token, key_id = _new_key(db_url)
        _warm(servers, token)
        for pid in _listener_pids(admin):  # as a database restart would
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # a listener back from a lost connection empties the cache: a revocation meanwhile
        # is not missed
        from layers import keys

        with psycopg.connect(db_url, autocommit=True, row_factory=psycopg.rows.dict_row) as c:
            keys.revoke(c, key_id)  # type: ignore[arg-type]
        assert max(_until_refused(servers, bearer(token), "/api/v1/catalogue")) < AT_ONCE_S
        deadline = time.monotonic() + 10
        while len(_listener_pids(admin)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_listener_pids(admin)) >= 2, "the listeners did not come back"
    # and once back, they hear the next revocation
    token, key_id = _new_key(db_url)
    time.sleep(0.5)
    _warm(servers, token)
    subprocess.run(
        [sys.executable, "-m", "api.cli", "apikey", "revoke", key_id],
        env={**os.environ, "DATABASE_URL": db_url},
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert max(_until_refused(servers, bearer(token), "/api/v1/catalogue")) < AT_ONCE_S


def _sign_in(base: str, token: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=base, timeout=10)
    page = client.get("/login?next=/report")
    form = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post(
        "/login", data={"key": token, "csrf_token": form, "next": "/report"}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    report = client.get("/report")
    assert report.status_code == 200
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', report.text).group(1)  # type: ignore[union-attr]
    return client, csrf


def test_after_sign_out_the_old_cookie_is_refused_on_every_server(db_url, servers):
    token, _ = _new_key(db_url)
    client, csrf = _sign_in(servers[0], token)
    cookie = {"Cookie": f"jg_session={client.cookies['jg_session']}"}
    for base in servers:  # the session is cached on both servers
        for _ in range(2):
            assert httpx.get(f"{base}/report", headers=cookie).status_code == 200
    out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    # a replay of the old cookie, on the server that signed out and on the other one
    waited = _until_refused(servers, {**cookie, "Accept": "text/html"}, "/report")
    assert max(waited) < AT_ONCE_S, waited
    api = httpx.get(f"{servers[1]}/api/v1/catalogue", headers=cookie)
    assert api.status_code == 401
