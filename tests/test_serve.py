"""`make run` end to end against the test database: set-up, serving, and a clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[1]


def test_make_run_serves_and_stops_cleanly_on_sigterm(db_url, tmp_path, api_keys):
    port = free_port()
    log = tmp_path / "run.log"
    env = {**os.environ, "DATABASE_URL": db_url, "PORT": str(port)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, timeout=180)
        health = httpx.get(f"{base}/healthz").json()
        assert health["status"] == "ok" and health["postgis"].startswith("3")
        r = httpx.get(
            f"{base}/api/v1/locate",
            params={"lon": 105.6402, "lat": 30.2787},
            headers={"Authorization": f"Bearer {api_keys['operator:510904']}"},
        )
        assert r.status_code == 200 and r.json()["side"] == "510904"
    finally:
        proc.send_signal(signal.SIGTERM)  # to make itself, as an operator or a supervisor would
        code = proc.wait(timeout=30)
    text = log.read_text()
    # make re-raises the signal after its recipe has finished, so -SIGTERM is a clean end too.
    assert code in (0, -signal.SIGTERM), (code, text[-2000:])
    assert "migrations applied" in text and "grids.geojson" in text
    assert "Shutting down" in text and "Application shutdown complete" in text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)


def _server_pids(log: Path) -> list[int]:
    import re

    return [int(p) for p in re.findall(r"server started \(pid (\d+)\)", log.read_text())]


def _wait_for(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def test_make_run_restarts_a_killed_server_then_gives_up_on_a_crash_loop(db_url, tmp_path):
    """kill -9 of the server: make run says so, starts it again and keeps running; past the
    restart limit (here 1 within 60 s) it stops and says why, instead of looping for ever."""
    port = free_port()
    log = tmp_path / "run.log"
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "PORT": str(port),
        "JOINTGRID_RUN_MAX_RESTARTS": "1",
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, timeout=180)
        first = _server_pids(log)[-1]
        os.kill(first, signal.SIGKILL)
        assert _wait_for(lambda: len(_server_pids(log)) == 2, 30), log.read_text()[-2000:]
        wait_healthy(base, proc, timeout=60)
        assert proc.poll() is None, "make run ended when its server was killed"
        assert "server exited with signal 9 (KILL); restarting in 1 s" in log.read_text()
        assert httpx.get(f"{base}/healthz", timeout=5).json()["status"] == "ok"
        os.kill(_server_pids(log)[-1], signal.SIGKILL)  # a second death within the window
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    text = log.read_text()
    assert code != 0 and "giving up" in text, text[-2000:]
    assert len(_server_pids(log)) == 2
