"""``kill -9`` of a live server during a burst of photo uploads: every photo the server
acknowledged is on the case and in the store with its hash, and none is there twice."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import bearer, free_port, wait_healthy
from tests.geo import ANJU, point_inside
from tests.mediagen import jpeg

PHOTOS = 48
SENDERS = 4


def _serve(db_url: str, media_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "JOINTGRID_ESCALATION_INTERVAL_S": "0",
        "JOINTGRID_MEDIA_DIR": str(media_dir),
        "JOINTGRID_MEDIA_MAX_COUNT": str(PHOTOS + 10),
    }
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _send(base: str, key: str, case_id: str, photo: bytes) -> int | None:
    try:
        r = httpx.post(
            f"{base}/api/v1/incidents/{case_id}/media",
            files=[("media", ("p.jpg", photo, "image/jpeg"))],
            headers=bearer(key),
            timeout=30,
        )
    except httpx.HTTPError:
        return None
    return r.status_code


def test_kill_9_during_uploads_loses_no_acknowledged_photo(
    db_url: str, api_keys: dict[str, str], tmp_path: Path
) -> None:
    from layers.db import connect

    media_dir = tmp_path / "media"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    admin = api_keys["admin"]
    photos = [jpeg(640, 480, seed=1000 + i) for i in range(PHOTOS)]
    shas = [hashlib.sha256(p).hexdigest() for p in photos]
    assert len(set(shas)) == PHOTOS

    proc = _serve(db_url, media_dir, port, log)
    try:
        wait_healthy(base, proc)
        lon, lat = point_inside(ANJU, 5000, 0.6)
        r = httpx.post(
            f"{base}/api/v1/incidents",
            json={"lon": lon, "lat": lat, "category": "illegal_dumping"},
            headers=bearer(admin),
            timeout=30,
        )
        assert r.status_code == 201, r.text
        case_id = r.json()["id"]

        acked: set[str] = set()
        lock = threading.Lock()
        todo = list(range(PHOTOS))

        def sender() -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop(0)
                status = _send(base, admin, case_id, photos[i])
                if status in (200, 201):
                    with lock:
                        acked.add(shas[i])

        threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # mid-burst: requests are in flight
        proc.wait(timeout=10)
        for t in threads:
            t.join(timeout=60)
        assert 8 <= len(acked) < PHOTOS, f"the burst must be cut short ({len(acked)} acked)"

        def on_case() -> dict[str, int]:
            with connect(db_url) as c:
                rows = c.execute(
                    "SELECT sha256, count(*) AS n FROM media WHERE incident_id = %s::uuid"
                    " GROUP BY sha256",
                    (case_id,),
                ).fetchall()
            return {r["sha256"]: r["n"] for r in rows}

        def stored(sha: str) -> bytes | None:
            path = media_dir / "originals" / sha[:2] / sha[2:4] / sha
            return path.read_bytes() if path.exists() else None

        after_crash = on_case()
        print(
            f"\nkill -9 after {len(acked)} acknowledged of {PHOTOS}; {len(after_crash)} on the"
            f" case after the crash ({len(after_crash) - len(acked)} stored but unanswered)"
        )
        lost = [s for s in acked if s not in after_crash]
        assert not lost, f"{len(lost)} acknowledged photo(s) lost"
        assert all(n == 1 for n in after_crash.values())
        for sha in after_crash:  # recorded means durably stored, with its hash
            data = stored(sha)
            assert data is not None and hashlib.sha256(data).hexdigest() == sha

        # The phone sends again what it had no answer for: each lands once.
        proc = _serve(db_url, media_dir, port, log)
        wait_healthy(base, proc)
        for i, sha in enumerate(shas):
            if sha not in acked:
                assert _send(base, admin, case_id, photos[i]) in (200, 201)
        # ... and a photo acknowledged before the crash, sent again, adds nothing
        again = httpx.post(
            f"{base}/api/v1/incidents/{case_id}/media",
            files=[("media", ("p.jpg", photos[shas.index(next(iter(acked)))], "image/jpeg"))],
            headers=bearer(admin),
            timeout=30,
        )
        assert again.status_code == 200 and again.json()["added"] == 0
        final = on_case()
        assert set(final) == set(shas) and all(n == 1 for n in final.values())
        files = [p for p in (media_dir / "originals").rglob("*") if p.is_file()]
        kept = [p for p in files if not p.name.startswith(".")]  # a torn temp file is not kept
        assert sorted(p.name for p in kept) == sorted(shas)
        with connect(db_url) as c:
            n = c.execute(
                "SELECT count(*) AS n FROM incident_events WHERE incident_id = %s::uuid"
                " AND action = 'add_media'",
                (case_id,),
            ).fetchone()
        assert n is not None and n["n"] == PHOTOS  # one audit event per photo, none twice

        # audit-trail verify checks the files: clean for these, and finds a changed one
        env: dict[str, Any] = {
            **os.environ,
            "DATABASE_URL": db_url,
            "JOINTGRID_MEDIA_DIR": str(media_dir),
        }

        def verify() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "api.cli", "audit-trail", "verify"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )

        out = verify()
        assert not any(s in out.stdout for s in shas), out.stdout
        assert "photo file(s)" in out.stdout
        victim = media_dir / "originals" / shas[0][:2] / shas[0][2:4] / shas[0]
        victim.write_bytes(b"\x00" + victim.read_bytes()[1:])
        out = verify()
        assert out.returncode == 1 and f"BAD FILE {shas[0]}" in out.stdout, out.stdout
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
