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
