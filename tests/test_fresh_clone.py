"""A fresh clone under a private (0700) folder, as root's home is on Debian: its own private
cluster, commands that find it without DATABASE_URL, a server that survives the database
restarting, and `make run`'s supervisor.

The clone is ``git clone`` of this checkout's HEAD (so commit before running). It reuses the
built virtualenv through a symlink instead of installing twice; PYTHONPATH points at the clone
so that its own code runs, not this checkout's (the virtualenv's editable install names this
one). Every wait is bounded; the clone's cluster is destroyed at the end.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests import scratch_cluster as sc
from tests.test_reliability import places, report_body  # noqa: F401  (places is a fixture)

pytestmark = pytest.mark.postgis

ROOT = Path(__file__).resolve().parents[1]
CLONE_SKIPS = (".venv", "var", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache")
RECOVERY_BOUND_S = 10.0  # the bound: answering again within 10 s of the database


@dataclass
class Clone:
    home: Path  # the private folder (mode 0700)
    path: Path  # the checkout inside it
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300, cwd: Path | None = None) -> Any:
        """A command in the clone; the working directory is elsewhere unless ``cwd`` says."""
        return subprocess.run(
            list(args),
            cwd=cwd or self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli(self, *args: str, timeout: float = 300) -> Any:
        """``jointgrid ARGS`` of the clone, run from outside the checkout."""
        return self.run(sys.executable, "-m", "api.cli", *args, timeout=timeout)

    def pgcluster(self, cmd: str, timeout: float = 120) -> Any:
        out = self.run(str(self.path / "scripts" / "pgcluster.sh"), cmd, timeout=timeout)
        assert out.returncode in (0, 3), f"pgcluster.sh {cmd}: {out.stdout}{out.stderr}"
        return out

    def owner_url(self) -> str:
        return (self.path / "var" / "pg" / "url").read_text().strip()


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clone]:
    sc.require_server_url()  # the same PostgreSQL + PostGIS install as the test server
    home = tmp_path_factory.mktemp("home")
    home.chmod(0o700)
    path = home / "jointgrid"
    if (ROOT / ".git").exists():
        out = subprocess.run(
            ["git", "clone", "-q", str(ROOT), str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
    else:  # a source tree without its history: copy what a clone would hold
        shutil.copytree(ROOT, path, ignore=shutil.ignore_patterns(*CLONE_SKIPS), symlinks=True)
    (path / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "VIRTUAL_ENV")}
    env.update(
        PYTHONPATH=str(path),
        JOINTGRID_ESCALATION_INTERVAL_S="0",
        JOINTGRID_DB_CONNECT_TIMEOUT_S="2",
    )
    env.pop("JOINTGRID_DB_SERVER_URL", None)
    c = Clone(home, path, env)
    try:
        yield c
    finally:
        c.run(str(path / "scripts" / "pgcluster.sh"), "destroy", timeout=120)


@pytest.fixture(scope="module")
def cluster(clone: Clone) -> Clone:
    """The clone's private cluster, started, migrated and loaded through the clone's commands."""
    clone.pgcluster("start")
    for cmd in ("migrate", "seed"):
        done = clone.cli(cmd)
        assert done.returncode == 0, f"jointgrid {cmd}: {done.stdout}{done.stderr}"
    return clone


class Server:
    """``jointgrid serve`` of the clone on a free port, run from outside the checkout."""

    def __init__(self, clone: Clone, log: Path) -> None:
        self.port = sc.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
                cwd=clone.home,
                env=clone.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not healthy in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


@pytest.fixture(scope="module")
def server(cluster: Clone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(cluster, tmp_path_factory.mktemp("clone-server") / "server.log")
    try:
        s.wait_healthy()
        yield s
    finally:
        s.stop()


def test_a_clone_under_a_private_folder_runs_its_own_cluster(cluster: Clone, server: Server):
    assert stat.S_IMODE(cluster.home.stat().st_mode) == 0o700  # nothing above was opened up
    location = Path(cluster.pgcluster("location").stdout.strip())
    assert (location / "data" / "PG_VERSION").exists()
    if os.geteuid() == 0:
        # the cluster's owner (postgres) cannot enter the private home, so the data lives
        # where it can, and the checkout records where
        assert cluster.home not in location.parents
        assert location.owner() == "postgres" and stat.S_IMODE(location.stat().st_mode) == 0o700
        assert (cluster.path / "var" / "pg" / "location").read_text().strip() == str(location)
    assert cluster.pgcluster("status").stdout.strip() == "running"
    health = httpx.get(f"{server.base}/healthz", timeout=5).json()
    assert health["status"] == "ok" and health["postgis"].startswith("3")


def test_the_server_logs_in_as_its_own_role_made_by_jointgrid(cluster: Clone, server: Server):
    with psycopg.connect(cluster.owner_url(), autocommit=True) as c:
        users = {
            r[0]
            for r in c.execute(
                "SELECT usename FROM pg_stat_activity"
                " WHERE datname = 'jointgrid' AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
        }
        attrs = c.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname = 'jointgrid_server'"
        ).fetchone()
    assert users == {"jointgrid_server"}, users
    assert attrs == (False, False, False)
    pw = cluster.path / "var" / "db-server-password"
    assert stat.S_IMODE(pw.stat().st_mode) == 0o600


def test_commands_find_the_private_cluster_without_database_url(cluster: Clone, server: Server):
    assert "DATABASE_URL" not in cluster.env
    out = cluster.cli("apikey", "create", "--role", "admin", "--name", "from anywhere")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("jg_")
    r = httpx.get(f"{server.base}/api/v1/catalogue", headers=sc.bearer(token), timeout=10)
    assert r.status_code == 200
    listing = cluster.cli("apikey", "list")
    assert token.split("_")[1] in listing.stdout


# -- the database restarts under a running server ---------------------------------------------


@dataclass
class Reporter:
    """A background thread that reports, each with its own Idempotency-Key, retrying 503s."""

    base: str
    token: str
    places: list[tuple[float, float]]
    acked: dict[str, str] = field(default_factory=dict)  # key -> case id
    ok_at: list[float] = field(default_factory=list)  # monotonic time of each 200/201
    statuses: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(7)
        run_id = uuid.uuid4().hex[:8]
        with httpx.Client(base_url=self.base, headers=sc.bearer(self.token), timeout=15) as c:
            i = 0
            while not self.stop.is_set():
                key, body = f"restart-{run_id}-{i:05d}", report_body(i, self.places, rng)
                for _attempt in range(400):  # bounded: at most ~40 s of retries per report
                    try:
                        r = c.post("/api/v1/incidents", json=body, headers={"Idempotency-Key": key})
                    except httpx.HTTPError as exc:
                        self._count(type(exc).__name__)
                        time.sleep(0.1)
                        continue
                    self._count(str(r.status_code))
                    if r.status_code in (200, 201):
                        self.acked[key] = r.json()["id"]
                        self.ok_at.append(time.monotonic())
                        break
                    if r.status_code != 503:
                        self.problems.append(f"{key}: {r.status_code} {r.text[:200]}")
                        break
                    time.sleep(0.1)
                i += 1
                time.sleep(0.02)

    def _count(self, k: str) -> None:
        self.statuses[k] = self.statuses.get(k, 0) + 1

    def first_ok_after(self, t: float, timeout: float) -> float | None:
        """The first acknowledgement at or after ``t``, waiting up to ``timeout`` s from now."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            later = [x for x in self.ok_at if x >= t]
            if later:
                return min(later)
            time.sleep(0.05)
        return None


def _healthy_after(base: str, t: float, timeout: float) -> float | None:
    deadline = t + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return None


def _port(url: str) -> int:
    return int(psycopg.conninfo.conninfo_to_dict(url)["port"])  # type: ignore[arg-type]


def test_the_server_answers_again_after_the_database_restarts(
    cluster: Clone,
    server: Server,
    places: list[tuple[float, float]],  # noqa: F811
):
    out = cluster.cli("apikey", "create", "--role", "grid_worker", "--side", "510904")
    assert out.returncode == 0, out.stderr
    token, key_id = out.stdout.strip(), out.stdout.strip().split("_")[1]
    pid = server.proc.pid
    rep = Reporter(server.base, token, places)
    thread = threading.Thread(target=rep.run, daemon=True)
    thread.start()
    figures: dict[str, Any] = {}
    blocker = None
    try:
        assert rep.first_ok_after(time.monotonic() - 60, 30) is not None, rep.statuses

        # 1. stop, then start: the cluster keeps its port (the old one is in TIME_WAIT)
        port_before = _port(cluster.owner_url())
        t0 = time.monotonic()
        cluster.pgcluster("stop")
        time.sleep(2)
        cluster.pgcluster("start")
        back = time.monotonic()
        assert _port(cluster.owner_url()) == port_before, "the cluster came back on a new port"
        ok = rep.first_ok_after(back, RECOVERY_BOUND_S)
        healthy = _healthy_after(server.base, back, RECOVERY_BOUND_S)
        assert ok is not None and healthy is not None, (
            rep.statuses,
            server.log.read_text()[-2000:],
        )
        figures["same_port"] = {
            "down_s": round(back - t0, 2),
            "first_report_after_start_s": round(ok - back, 2),
            "healthz_after_start_s": round(healthy - back, 2),
        }

        # 2. the old port is taken while the database is down: it comes back elsewhere, and
        # the server finds it through the recorded URL, still without a restart of its own
        cluster.pgcluster("stop")
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port_before))
        blocker.listen()
        cluster.env["JOINTGRID_PG_PORT_WAIT_S"] = "2"
        try:
            cluster.pgcluster("start")
        finally:
            del cluster.env["JOINTGRID_PG_PORT_WAIT_S"]
        back = time.monotonic()
        assert _port(cluster.owner_url()) != port_before
        ok = rep.first_ok_after(back, RECOVERY_BOUND_S)
        healthy = _healthy_after(server.base, back, RECOVERY_BOUND_S)
        assert ok is not None and healthy is not None, (
            rep.statuses,
            server.log.read_text()[-2000:],
        )
        figures["new_port"] = {
            "first_report_after_start_s": round(ok - back, 2),
            "healthz_after_start_s": round(healthy - back, 2),
        }
        time.sleep(1)
    finally:
        rep.stop.set()
        thread.join(timeout=60)
        if blocker is not None:
            blocker.close()
    assert server.proc.poll() is None and server.proc.pid == pid, "the server restarted"
    assert not rep.problems, rep.problems[:5]
    with psycopg.connect(cluster.owner_url()) as c:
        rows = dict(
            c.execute(
                "SELECT split_part(idempotency_key, ':', 2), id::text FROM incidents"
                " WHERE reporter->>'key_id' = %s",
                (key_id,),
            ).fetchall()
        )
    lost = [k for k in rep.acked if rows.get(k) != rep.acked[k]]
    figures.update(
        reports_acknowledged=len(rep.acked),
        cases_stored=len(rows),
        cases_lost=len(lost),
        statuses=dict(sorted(rep.statuses.items())),
        server_restarts=0,
    )
    sc.record_figures("database_restart", figures)
    print(f"\n[reliability] database_restart: {figures}")
    assert not lost, f"{len(lost)} acknowledged report(s) lost"


# -- make run's supervisor, with the private cluster --------------------------------------------


def test_serve_restarts_a_killed_server_and_keeps_the_database(
    cluster: Clone, server: Server, tmp_path: Path
):
    server.stop()  # the module's server is done; serve.sh brings its own
    cluster.pgcluster("stop")  # so that serve.sh starts the cluster, and owns it
    port = sc.free_port()
    log = tmp_path / "run.log"
    env = {**cluster.env, "PORT": str(port)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(cluster.path / "scripts" / "serve.sh")],
            cwd=cluster.home,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        assert _healthy_after(base, time.monotonic(), 180) is not None, log.read_text()[-3000:]
        pids = [int(x) for x in _pids(log)]
        os.kill(pids[-1], signal.SIGKILL)
        t = time.monotonic()
        assert _healthy_after(base, t + 0.5, 60) is not None, log.read_text()[-3000:]
        assert proc.poll() is None, "make run's supervisor exited"
        text = log.read_text()
        assert "server exited with signal 9 (KILL); restarting in 1 s" in text
        assert len(_pids(log)) == 2
        assert cluster.pgcluster("status").stdout.strip() == "running"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]
    assert cluster.pgcluster("status").stdout.strip() == "stopped"  # it started it, so it stops it


def _pids(log: Path) -> list[str]:
    import re

    return re.findall(r"server started \(pid (\d+)\)", log.read_text())
