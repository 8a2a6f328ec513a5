"""Photo uploads: 2 MB phone photos through the full path, beside a bare write of the bytes.

The full path is ``POST /api/v1/incidents/{id}/media`` on JointGrid's server: multipart
parsing, recognising the format, the header's pixel check, the full decode, hashing, the
durable store of the original and both stripped copies, and the transaction with the media row
and its audit event. The anchor (bench/_media_bare_app.py) is the same uvicorn + FastAPI +
python-multipart stack with an endpoint that only hashes the bytes and writes them durably
(the same FileStore). Both run in one worker, with the same concurrency, in the same run.

Then the added latency of a report with one photo (multipart) beside the same report without
(JSON), one request at a time.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench._common import (
    ROOT,
    create_db,
    drop_db,
    free_port,
    percentile,
    serve,
    table,
    write_section,
)

DB = "jointgrid_bench_media"
PHOTOS = int(os.environ.get("JOINTGRID_BENCH_MEDIA_PHOTOS", "60"))
CONCURRENCY = int(os.environ.get("JOINTGRID_BENCH_CONCURRENCY", "4"))
LATENCY_N = int(os.environ.get("JOINTGRID_BENCH_MEDIA_LATENCY_N", "25"))
PER_CASE = 8


def phone_photo(target_bytes: int = 2_000_000) -> bytes:
    """A 12-megapixel (4000 x 3000) JPEG of about ``target_bytes``, with a phone's EXIF, an
    ICC profile and GPS, as a phone camera writes it."""
    from PIL import ImageCms

    from tests.mediagen import exif, picture

    img = picture(4000, 3000, seed=7)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    e = exif(gps=(105.6, 30.3), taken=datetime(2026, 12, 1, 9, 30), orientation=6)
    best = b""
    for q in (95, 90, 85, 80, 75, 70, 60, 50, 40, 30):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=q, exif=e, icc_profile=icc)
        best = buf.getvalue()
        if len(best) <= target_bytes:
            break
    return best


def variants(base: bytes, n: int) -> list[bytes]:
    """``n`` distinct photos of identical cost: a JPEG comment segment with a counter after
    the start marker, so each has its own hash and none is stored once for another."""
    out = []
    for i in range(n):
        note = f"bench {i} {uuid.uuid4()}".encode()
        out.append(base[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + base[2:])
    return out


def burst(url_for: Any, photos: list[bytes], key: str) -> dict[str, Any]:
    """Send every photo once over ``CONCURRENCY`` keep-alive clients; photos per second."""
    lat: list[float] = []
    statuses: list[int] = []
    todo = list(range(len(photos)))
    lock = threading.Lock()

    def run() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                t0 = time.perf_counter()
                r = c.post(url_for(i), files=[("media", ("IMG.jpg", photos[i], "image/jpeg"))])
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt * 1000)
                    statuses.append(r.status_code)

    threads = [threading.Thread(target=run) for _ in range(CONCURRENCY)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    ok = sum(1 for s in statuses if s < 300)
    mb = sum(len(p) for p in photos) / 1e6
    return {
        "photos": len(photos),
        "ok": ok,
        "statuses": sorted(set(statuses)),
        "seconds": round(elapsed, 2),
        "per_s": round(len(photos) / elapsed, 2),
        "MB_per_s": round(mb / elapsed, 1),
        "p50_ms": round(percentile(lat, 50), 1),
        "p90_ms": round(percentile(lat, 90), 1),
    }


def main() -> None:
    from layers import keys
    from layers.db import connect
    from tests.geo import ANJU, point_inside

    url = create_db(DB)
    with connect(url) as c:
        c.autocommit = True
        key, _ = keys.create(c, role="admin", side=None, name="bench media")
    base = phone_photo()
    photos = variants(base, PHOTOS)
    work = Path(tempfile.mkdtemp(prefix="jointgrid-bench-media-", dir=ROOT / "var"))
    py = sys.executable
    results: dict[str, Any] = {}
    try:
        # -- the anchor: the bytes written, nothing else
        port = free_port()
        env = {"JOINTGRID_BENCH_BARE_DIR": str(work / "bare")}
        args = [py, "-m", "uvicorn", "bench._media_bare_app:create_app", "--factory"]
        args += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
        with serve(args, env, port, work / "bare.log"):
            results["bare"] = burst(lambda i: f"http://127.0.0.1:{port}/upload", photos, key)

        # -- the full path
        port = free_port()
        env = {
            "DATABASE_URL": url,
            "JOINTGRID_MEDIA_DIR": str(work / "media"),
            "JOINTGRID_ESCALATION_INTERVAL_S": "0",
        }
        args = [py, "-m", "api.cli", "serve", "--port", str(port)]
        with serve(args, env, port, work / "server.log"):
            api = f"http://127.0.0.1:{port}"
            h = {"Authorization": f"Bearer {key}"}
            ids = []
            with httpx.Client(headers=h, timeout=60) as c:
                lon, lat = point_inside(ANJU, 3000, 0.5)
                for _ in range((PHOTOS + PER_CASE - 1) // PER_CASE):
                    r = c.post(
                        f"{api}/api/v1/incidents",
                        json={"lon": lon, "lat": lat, "category": "illegal_dumping"},
                    )
                    r.raise_for_status()
                    ids.append(r.json()["id"])
            results["full"] = burst(
                lambda i: f"{api}/api/v1/incidents/{ids[i // PER_CASE]}/media", photos, key
            )
            results["latency"] = latency(api, key, base)
        results["stages"] = stages(base, work / "stages")
    finally:
        drop_db(DB)
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    report(results, base)


def latency(api: str, key: str, photo: bytes) -> dict[str, Any]:
    """One request at a time: a report without a photo, then the same with one (multipart)."""
    import json

    from tests.geo import ANJU, point_inside

    out: dict[str, list[float]] = {"json": [], "one_photo": []}
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        lon, lat = point_inside(ANJU, 3000, 0.5)
        for i in range(LATENCY_N * 2):
            body = {"lon": lon, "lat": lat, "category": "infrastructure"}
            hk = {"Idempotency-Key": str(uuid.uuid4())}
            if i % 2 == 0:
                t0 = time.perf_counter()
                r = c.post(f"{api}/api/v1/incidents", json=body, headers=hk)
                out["json"].append((time.perf_counter() - t0) * 1000)
            else:
                one = variants(photo, 1)[0]
                t0 = time.perf_counter()
                r = c.post(
                    f"{api}/api/v1/incidents",
                    data={"report": json.dumps(body)},
                    files=[("media", ("IMG.jpg", one, "image/jpeg"))],
                    headers=hk,
                )
                out["one_photo"].append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 201, r.text
    return {
        k: {"p50_ms": round(percentile(v, 50), 1), "p90_ms": round(percentile(v, 90), 1)}
        for k, v in out.items()
    }


def stages(photo: bytes, folder: Path, runs: int = 5) -> dict[str, float]:
    """Where one photo's time goes, stage by stage, in this process (median of ``runs``, ms)."""
    import hashlib

    from PIL import Image

    from gis import photos
    from layers.blobstore import FileStore

    out: dict[str, list[float]] = {}

    def timed(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        v = fn(*args, **kwargs)
        out.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
        return v

    def store_all(store: FileStore, p: photos.Photo) -> None:
        store.put(p.sha256, p.data)
        store.put(p.sha256 + ".thumb.jpg", p.thumb.data)
        store.put(p.sha256 + ".screen.jpg", p.screen.data)

    store = FileStore(folder)
    limits = {"max_bytes": 1 << 30, "max_pixels": 1 << 30, "thumb_px": 320, "screen_px": 1600}
    for _ in range(runs):
        data = variants(photo, 1)[0]
        timed("sha256", hashlib.sha256, data)
        img = timed("sniff + header", photos._open, data, "JPEG", "image/jpeg", 40_000_000)
        w, h = img.size
        img.draft("RGB", (w * 1600 // max(w, h), h * 1600 // max(w, h)))
        timed("decode (DCT-scaled)", img.load)
        timed("decode (full size, for comparison)", Image.open(io.BytesIO(data)).load)
        p = timed("gis.photos.check (all of it)", photos.check, data, **limits)
        timed("durable store: original + 2 copies", store_all, store, p)
    return {k: round(percentile(v, 50), 1) for k, v in out.items()}


def report(r: dict[str, Any], base: bytes) -> None:
    ratio = r["full"]["per_s"] / r["bare"]["per_s"] if r["bare"]["per_s"] else float("nan")
    lat = r["latency"]
    st = r["stages"]
    added = lat["one_photo"]["p50_ms"] - lat["json"]["p50_ms"]
    rows = [{"path": "bare write (anchor)", **r["bare"]}, {"path": "full path", **r["full"]}]
    body = f"""
{PHOTOS} distinct 12-megapixel phone photos of {len(base) / 1e6:.2f} MB (EXIF with GPS and
orientation, an ICC profile), each sent once, {CONCURRENCY} at a time, one server worker.
Full path: multipart parse, content sniffing, header pixel check, full decode (JPEG DCT-scaled
to the screen size), SHA-256, durable store of the original and both stripped copies, the
media row and its audit event. Anchor: the same stack, hashing and durably writing the bytes.

{table(rows, ["path", "photos", "ok", "seconds", "per_s", "MB_per_s", "p50_ms", "p90_ms"])}

**Full path / bare write: {ratio:.0%}** of the anchor's throughput (goal: at least 50 %).

A report one request at a time (p50 / p90): without a photo {lat["json"]["p50_ms"]} /
{lat["json"]["p90_ms"]} ms, with one 2 MB photo {lat["one_photo"]["p50_ms"]} /
{lat["one_photo"]["p90_ms"]} ms: **{added:.0f} ms added** by the photo at the median.

Where one photo's time goes (one at a time, in the benchmark's process, median ms):

{table([{"stage": k, "ms": v} for k, v in r["stages"].items()], ["stage", "ms"])}

**Why the goal is not met.** The bare write is a multipart parse, a hash and an fsynced
file: {1000 / r["bare"]["per_s"]:.0f} ms of the server per photo at its throughput. The full
path must also decode the whole photo in the request that brings it, because a truncated or
damaged file is refused there (and one bad photo refuses the report): the decode alone takes
{st["decode (DCT-scaled)"]} ms here, and all of `gis.photos.check` (decode, shrink, rotation,
colour, two encodes) {st["gis.photos.check (all of it)"]} ms. What was done: the decoder
scales to the screen copy's size (both sides kept at least the target's), the shrink comes
before the rotation and the colour transform, an sRGB profile is not transformed, and the
work runs on one thread per core outside the event loop (the decoders release the GIL, so
throughput grows with cores). Making the copies after the answer (the cache already remakes
a missing copy on first view) would save the shrink and encodes, not the decode: half the
anchor stays out of reach on this machine while damaged photos are refused in the request.
"""
    write_section("media", "Photo uploads (bench/media.py)", body)
    print(body)


if __name__ == "__main__":
    main()
