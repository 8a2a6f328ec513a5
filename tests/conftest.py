"""Test fixtures on a real PostGIS.

The suite makes its own throwaway database on the server named by JOINTGRID_TEST_SERVER_URL
(``make test`` points it at the private cluster, or at DATABASE_URL), migrates it, loads
``boundary_data/`` and drops it at the end. Each test that takes ``conn`` runs inside a
transaction that is rolled back. When JOINTGRID_REQUIRE_POSTGIS=1, a skipped PostGIS test fails
the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql as q
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from layers.db import Source

# The test client names its server "testserver": trust it as the server's own Host for links.
os.environ.setdefault("JOINTGRID_TRUSTED_HOSTS", "localhost,127.0.0.1,::1,testserver")

# Debian's chromium, driven by Playwright (pages load nothing from outside).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

POSTGIS_FIXTURES = {"db_url", "conn", "client", "live_client", "live_server", "api_keys"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if POSTGIS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgis)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and os.environ.get("JOINTGRID_REQUIRE_POSTGIS") == "1"
        and item.get_closest_marker("postgis") is not None
    ):
        report.outcome = "failed"
        report.longrepr = f"a PostGIS test was skipped, which is not allowed: {report.longrepr}"


def _server_url() -> str:
    url = os.environ.get("JOINTGRID_TEST_SERVER_URL") or os.environ.get("DATABASE_URL")
    if not url:
        if os.environ.get("JOINTGRID_REQUIRE_POSTGIS") == "1":
            pytest.fail("no PostGIS server: set JOINTGRID_TEST_SERVER_URL or DATABASE_URL")
        pytest.skip("no PostGIS server configured (run `make test`)")
    return url


def _with_db(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def db_url() -> Iterator[str]:
    """A fresh database, migrated and loaded with boundary_data/, dropped afterwards."""
    server = _server_url()
    name = f"jointgrid_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(_with_db(server, "postgres"), autocommit=True)
    admin.execute(q.SQL("CREATE DATABASE {}").format(q.Identifier(name)))
    url = _with_db(server, name)
    try:
        from api.usecases.loading import migrate_and_seed
        from layers.db import connect

        with connect(url) as conn:
            migrate_and_seed(conn, login=server_login)
        yield url
    finally:
        admin.execute(q.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(q.Identifier(name)))
        admin.close()


@pytest.fixture(scope="session")
def api_keys(db_url: str) -> dict[str, str]:
    """Committed keys: admin, feed, and operator / grid_worker / team_member for each side."""
    from layers import keys
    from layers.db import connect

    out: dict[str, str] = {}
    with connect(db_url) as c:
        c.autocommit = True
        teams = {
            r["side"]: r["code"]
            for r in c.execute(
                "SELECT DISTINCT ON (side) side, code FROM teams ORDER BY side, code"
            )
        }
        out["admin"], _ = keys.create(c, role="admin", side=None, name="test admin")
        out["feed"], _ = keys.create(c, role="feed", side=None, name="test feed")
        for side in ("510904", "500152"):
            for role in ("operator", "grid_worker"):
                out[f"{role}:{side}"], _ = keys.create(c, role=role, side=side, name=f"test {role}")
            out[f"team_member:{side}"], _ = keys.create(
                c, role="team_member", side=side, team=teams[side], name="test team member"
            )
            out[f"team:{side}"] = teams[side]
    return out


def server_login(conn: psycopg.Connection[Any]) -> None:
    """As the owner: the server's login role, as `jointgrid migrate` makes it.

    In-process pools (``make_pool``) and server processes log in as that role, never as the
    owner that migrates and seeds.
    """
    from api import settings
    from layers.roles import ensure_login_role

    db = settings.database()
    ensure_login_role(conn, user=db.server_user, password=db.server_password())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose every change is rolled back when the test ends."""
    with (
        psycopg.connect(db_url, row_factory=dict_row) as c,  # type: ignore[arg-type]
        c.transaction(force_rollback=True),
    ):
        yield c


@pytest.fixture(scope="session")
def catalogue() -> Any:
    from api import settings
    from api.catalogue import load_catalogue

    return load_catalogue(settings.data().catalogue)


@pytest.fixture()
def client(db_url: str, conn: psycopg.Connection[Any], api_keys: dict[str, str]) -> Iterator[Any]:
    """An HTTP client (as admin) whose requests share the test's rolled-back transaction."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from layers.db import Database

    app = create_app(database=Database(SharedSource(conn)))
    with TestClient(app, raise_server_exceptions=False, headers=bearer(api_keys["admin"])) as c:
        yield c


class SharedSource(Source):
    """A ``layers.db.Source`` whose every lease is the test's rolled-back connection: one unit
    of work at a time, each in a savepoint kept when it succeeds and rolled back when it fails."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(None, wait_s=10.0, size=1)
        self.conn = conn
        self._tx: Any = None

    def _take(self, timeout: float) -> psycopg.Connection[Any]:
        self._tx = self.conn.transaction()
        self._tx.__enter__()
        return self.conn

    def _give(self, conn: Any, *, failed: bool, discard: bool) -> None:
        tx, self._tx = self._tx, None
        if failed:
            tx.__exit__(RuntimeError, RuntimeError("the unit of work failed"), None)
        else:
            tx.__exit__(None, None, None)


@pytest.fixture()
def live_client(db_url: str, api_keys: dict[str, str]) -> Iterator[Any]:
    """An HTTP client (as admin) on the app with a real pool: requests commit."""
    from fastapi.testclient import TestClient

    from api.app import create_app, make_pool
    from api.settings import DatabaseSettings

    pool = make_pool(DatabaseSettings(DATABASE_URL=db_url, pool_min=2, pool_max=20))  # type: ignore[call-arg]
    app = create_app(pool=pool)
    try:
        with TestClient(app, raise_server_exceptions=False, headers=bearer(api_keys["admin"])) as c:
            yield c
    finally:
        pool.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, proc: Any, timeout: float = 60.0) -> None:
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited early with status {proc.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become healthy in time")


@contextmanager
def serving(
    db_url: str,
    *,
    env: dict[str, str] | None = None,
    log: Any = None,
    timeout: float = 120.0,
) -> Iterator[tuple[str, Any]]:
    """``jointgrid serve`` on a free port of 127.0.0.1 against ``db_url``, with ``env`` over
    the test's environment (no escalation loop unless asked), its output in ``log`` (a path)
    or discarded; yields (base URL, process) once /healthz answers, and stops it afterwards."""
    import subprocess
    import sys

    port = free_port()
    full = {
        **os.environ,
        "DATABASE_URL": db_url,
        "JOINTGRID_ESCALATION_INTERVAL_S": "0",
        **(env or {}),
    }
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        if log is not None:
            out.close()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, timeout=timeout)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def live_server(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 and a free port, on the test database."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    # the feeds' client tests read them anonymously
    with serving(db_url, env={"JOINTGRID_PUBLIC_FEEDS": "true"}, log=log) as (base, _proc):
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium for a test module (Playwright with ``executable_path``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
