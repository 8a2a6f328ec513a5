"""Throwaway databases, clusters and servers for the reliability and fuzz tests.

- :class:`ScratchCluster`: a private PostgreSQL + PostGIS cluster in a temporary folder under
  /tmp, on 127.0.0.1 and a free port, that a test may stop and start at will (the shared test
  cluster must never be stopped: other tests use it). As root it belongs to the ``postgres``
  system user, because initdb refuses to run as root; as anyone else, to that user.
- :func:`fresh_database`: a new database on a server, migrated and loaded with boundary_data/.
- :class:`ServerProcess`: a real uvicorn (``jointgrid serve``) on 127.0.0.1, which a test may
  stop, kill -9 and start again on the same port.

Everything here talks to 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as q
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT = ROOT / "var" / "test-artifacts" / "reliability.json"


def record_figures(section: str, figures: dict[str, Any]) -> None:
    """Write one test's figures into var/test-artifacts/reliability.json (docs/reliability.md)."""
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(ARTIFACT.read_text())
    except (OSError, ValueError):
        data = {}
    data[section] = {**figures, "recorded_at": datetime.now(UTC).isoformat(timespec="seconds")}
    ARTIFACT.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def require_server_url() -> str:
    """The test server (as in conftest): fail when PostGIS is required, skip otherwise."""
    import pytest

    url = os.environ.get("JOINTGRID_TEST_SERVER_URL") or os.environ.get("DATABASE_URL")
    if not url:
        if os.environ.get("JOINTGRID_REQUIRE_POSTGIS") == "1":
            pytest.fail("no PostGIS server: set JOINTGRID_TEST_SERVER_URL or DATABASE_URL")
        pytest.skip("no PostGIS server configured (run `make test`)")
    return url


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_db(url: str, dbname: str) -> str:
    """The same server URL, naming another database."""
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)  # type: ignore[arg-type]


def pg_bindir() -> Path:
    """The newest PostgreSQL whose PostGIS extension is installed (Debian layout)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for d in candidates:
        version = d.parent.name
        if (d / "initdb").exists() and Path(
            f"/usr/share/postgresql/{version}/extension/postgis.control"
        ).exists():
            return d
    raise RuntimeError("no PostgreSQL with PostGIS found; run scripts/setup.sh first")


class ScratchCluster:
    """A PostgreSQL cluster in a temporary folder; :meth:`destroy` stops it and removes it.

    Use it as a context manager, or call :meth:`destroy` in a ``finally``.
    """

    user = "jointgrid"

    def __init__(self, *, prefix: str = "jointgrid-scratch-") -> None:
        self.bindir = pg_bindir()
        self.as_root = os.geteuid() == 0
        self.owner = "postgres" if self.as_root else pwd.getpwuid(os.geteuid()).pw_name
        # /tmp rather than pytest's tmp_path: every folder above the data directory must be
        # searchable by the `postgres` user, and pytest's base folder is private to root.
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.data = self.root / "data"
        self.run = self.root / "run"
        self.log = self.root / "postgres.log"
        self.password = secrets.token_urlsafe(24)
        self.port = free_port()
        try:
            self._init()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    # -- running commands as the cluster's owner ---------------------------------------------

    def _as_owner(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [*args]
        if self.as_root:
            cmd = ["runuser", "-u", self.owner, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def _chown(self, path: Path) -> None:
        if self.as_root:
            shutil.chown(path, user=self.owner, group=None)

    def _init(self) -> None:
        if self.as_root:
            subprocess.run(["id", "-u", "postgres"], check=True, capture_output=True)
        self.root.chmod(0o755)
        self.run.mkdir(mode=0o755)
        self._chown(self.root)
        self._chown(self.run)
        pwfile = self.root / "password"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        out = self._as_owner(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",  # throwaway: nothing here must survive a power cut
        )
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{out.stdout}\n{out.stderr}")
        pwfile.unlink()

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, *, timeout: float = 60) -> float:
        """Start the cluster on its port; return the seconds it took."""
        t0 = time.monotonic()
        opts = (
            f"-p {self.port} -k {self.run} -c listen_addresses=127.0.0.1 "
            "-c max_connections=100 -c fsync=off -c full_page_writes=off"
        )
        out = self._as_owner(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            opts,
            "start",
            timeout=timeout + 10,
        )
        if out.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{out.stdout}\n{out.stderr}\n{self.tail()}")
        return time.monotonic() - t0

    def stop(self, *, mode: str = "fast", timeout: float = 60) -> float:
        """Stop the cluster (``pg_ctl stop -m MODE``); return the seconds it took."""
        t0 = time.monotonic()
        out = self._as_owner(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-m",
            mode,
            "-w",
            "-t",
            str(int(timeout)),
            "stop",
            timeout=timeout + 10,
        )
        if out.returncode != 0 and self.running():
            raise RuntimeError(f"pg_ctl stop failed:\n{out.stdout}\n{out.stderr}")
        return time.monotonic() - t0

    def running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        out = self._as_owner(str(self.bindir / "pg_ctl"), "-D", str(self.data), "status")
        return out.returncode == 0

    def destroy(self) -> None:
        """Stop the cluster if it runs and remove its folder."""
        try:
            if self.running():
                self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ScratchCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- databases ----------------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        """A TCP connection URL for the cluster's owner role (password authentication)."""
        return make_conninfo(
            host="127.0.0.1",
            port=str(self.port),
            user=self.user,
            password=self.password,
            dbname=dbname,
        )

    def create_database(self, name: str) -> str:
        """Create an empty database; return its URL."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as c:
            c.execute(q.SQL("CREATE DATABASE {}").format(q.Identifier(name)))
        return self.url(name)


# -- throwaway databases on any server ---------------------------------------------------------


def migrate_and_seed(url: str) -> None:
    """Apply the migrations and load boundary_data/ into the database at ``url``."""
    from api.usecases.loading import migrate_and_seed as prepare
    from layers.db import connect
    from tests.conftest import server_login

    with connect(url) as conn:
        prepare(conn, login=server_login)


def create_database(server_url: str, name: str, *, template: str | None = None) -> str:
    """Create database ``name`` on the server (optionally as a copy of ``template``)."""
    with psycopg.connect(with_db(server_url, "postgres"), autocommit=True) as admin:
        if template:
            admin.execute(
                q.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    q.Identifier(name), q.Identifier(template)
                )
            )
        else:
            admin.execute(q.SQL("CREATE DATABASE {}").format(q.Identifier(name)))
    return with_db(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(with_db(server_url, "postgres"), autocommit=True) as admin:
        admin.execute(q.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(q.Identifier(name)))


def fresh_database(server_url: str, name: str) -> str:
    """A new database on the server, migrated and loaded; return its URL."""
    url = create_database(server_url, name)
    try:
        migrate_and_seed(url)
    except BaseException:
        drop_database(server_url, name)
        raise
    return url


def make_key(url: str, *, role: str, side: str | None = None, name: str = "") -> tuple[str, str]:
    """Create an API key in the database at ``url``; return (token, key id)."""
    from layers import keys
    from layers.db import connect

    with connect(url) as c:
        c.autocommit = True
        token, rec = keys.create(c, role=role, side=side, name=name)
    return token, str(rec["id"])


# -- a real server process ---------------------------------------------------------------------


class ServerProcess:
    """``jointgrid serve`` on 127.0.0.1 in a child process, with its output in ``log``."""

    def __init__(
        self,
        database_url: str,
        log: Path,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.log = log
        self.port = port or free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "JOINTGRID_ESCALATION_INTERVAL_S": "0",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60, healthy: bool = True) -> float:
        """Start the server (on the same port as before); return seconds until it is healthy."""
        t0 = time.monotonic()
        self.launch()
        if healthy:
            self.wait_healthy(timeout=timeout)
        else:
            self.wait_listening(timeout=timeout)
        return time.monotonic() - t0

    def launch(self) -> None:
        """Start the process without waiting for it (see :meth:`wait_healthy`)."""
        with open(self.log, "ab") as out:
            out.write(f"\n--- start {self.starts + 1} ---\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"the server exited early with status {self.proc.returncode}:\n{self.tail()}"
            )

    def wait_healthy(self, *, timeout: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not become healthy in {timeout} s:\n{self.tail()}")

    def wait_listening(self, *, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the server did not listen in {timeout} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, in-flight requests die with the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=15)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @staticmethod
    def stop_all(servers: list[ServerProcess]) -> None:
        """SIGTERM every server at once, then wait for each (SIGKILL after 15 s)."""
        for s in servers:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.terminate()
        for s in servers:
            s.stop()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
