"""Photo uploads: 2 MB phone photos through the full path, beside a bare write of the bytes.

The upload is ``POST /api/v1/incidents/{id}/media`` on JointGrid's server: multipart parsing,
recognising the format, the header's pixel check, the walk of the file's whole structure,
hashing, the durable store of the original, and the transaction with the media row and its
audit event; the answer comes then. Every pixel is decoded after the answer, once, when the
stripped copies are made (the server's finisher threads, or the first view of a copy). The
full path as issue 18 counts it ends when both copies are made: after the burst, every photo's
screen copy is fetched once (4 at a time), and the throughput to that point is reported too.
The anchor (bench/_media_bare_app.py) is the same uvicorn + FastAPI + python-multipart stack
with an endpoint that only hashes the bytes and writes them durably (the same FileStore). Both
run in one worker, with the same concurrency, in the same run.

Then the added latency of a report with one photo (multipart) beside the same report without
(JSON), one request at a time.
"""

from __future__ import annotations

import io
import json
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
PHOTOS = int(os.environ.get("JOINTGRID_BENCH_MEDIA_PHOTOS", "40"))  # per round and path
ROUNDS = int(os.environ.get("JOINTGRID_BENCH_MEDIA_ROUNDS", "5"))
CONCURRENCY = int(os.environ.get("JOINTGRID_BENCH_CONCURRENCY", "4"))
LATENCY_N = int(os.environ.get("JOINTGRID_BENCH_MEDIA_LATENCY_N", "25"))
PER_CASE = 8
THUMB_PX, SCREEN_PX = 320, 1600  # the settings' defaults
SHA = "sha256 of the 2 MB (in the request)"
STRUCTURE = "structure walk, no pixel decoded (in the request)"
VALIDATE = "gis.photos.validate, all of it (in the request)"
ORIGINAL_STORE = "durable store: the original (in the request)"
EIGHTH = "decode at 1/8 (for comparison: the cheapest DCT scale)"
FULL = "decode at full size (for comparison)"
HALF = "copies 1: decode at 1/2, 2000 x 1500 (the smallest DCT scale at least 1600 px)"
RESAMPLE = "copies 2: bilinear 2000 to 1600 px"
TURN = "copies 3: turn upright (EXIF orientation)"
REBUILD = "copies 4: rebuild from the pixels alone (no metadata)"
ENCODE_SCREEN = "copies 5: encode the screen copy (quality 82, baseline)"
THUMB = "copies 6: thumbnail from the screen copy (reduce, then bicubic)"
ENCODE_THUMB = "copies 7: encode the thumbnail"
COPIES = "gis.photos.copies, all of it (after the answer)"
COPIES_STORE = "durable store: both copies (after the answer)"


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
    import contextlib

    from layers import keys
    from layers.db import connect

    url = create_db(DB)
    with connect(url) as c:
        c.autocommit = True
        key, _ = keys.create(c, role="admin", side=None, name="bench media")
    base = phone_photo()
    work = Path(tempfile.mkdtemp(prefix="jointgrid-bench-media-", dir=ROOT / "var"))
    py = sys.executable
    results: dict[str, Any] = {"rounds": [], "load_start": os.getloadavg()}
    try:
        results["stages"] = stages(base, work / "stages")
        with contextlib.ExitStack() as servers:
            # -- the anchor: the bytes written, nothing else
            bare_port = free_port()
            env = {"JOINTGRID_BENCH_BARE_DIR": str(work / "bare")}
            args = [py, "-m", "uvicorn", "bench._media_bare_app:create_app", "--factory"]
            args += ["--port", str(bare_port), "--no-access-log", "--log-level", "warning"]
            servers.enter_context(serve(args, env, bare_port, work / "bare.log"))
            # -- the full path
            port = free_port()
            env = {
                "DATABASE_URL": url,
                "JOINTGRID_MEDIA_DIR": str(work / "media"),
                "JOINTGRID_ESCALATION_INTERVAL_S": "0",
            }
            args = [py, "-m", "api.cli", "serve", "--port", str(port)]
            servers.enter_context(serve(args, env, port, work / "server.log"))
            api = f"http://127.0.0.1:{port}"
            # Rounds: in each, the bare write and the full path (its burst, then every copy
            # made) on photos of their own, in alternating order; each ratio is paired with
            # its own round's anchor.
            for r in range(ROUNDS):
                ids = new_cases(api, key)
                shots = {"bare": variants(base, PHOTOS), "full": variants(base, PHOTOS)}
                one: dict[str, Any] = {}
                for what in ("bare", "full") if r % 2 == 0 else ("full", "bare"):
                    if what == "bare":
                        one["bare"] = burst(
                            lambda i: f"http://127.0.0.1:{bare_port}/upload", shots["bare"], key
                        )
                        continue
                    one["full"] = burst(
                        lambda i, ids=ids: f"{api}/api/v1/incidents/{ids[i // PER_CASE]}/media",
                        shots["full"],
                        key,
                    )
                    one["copies"] = serve_all(api, key, ids)
                results["rounds"].append(one)
                print(f"round {r + 1}: {json.dumps(one)}", flush=True)
            results["first_view"] = first_view(api, key, new_cases(api, key, 12), base)
            results["latency"] = latency(api, key, base)
    finally:
        drop_db(DB)
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    results["load_end"] = os.getloadavg()
    report(results, base)


def new_cases(api: str, key: str, photos: int = PHOTOS) -> list[str]:
    """Enough new cases for ``photos`` photos, ``PER_CASE`` each (under the per-case limit)."""
    from tests.geo import ANJU, point_inside

    ids = []
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        lon, lat = point_inside(ANJU, 3000, 0.5)
        for _ in range((photos + PER_CASE - 1) // PER_CASE):
            r = c.post(
                f"{api}/api/v1/incidents",
                json={"lon": lon, "lat": lat, "category": "illegal_dumping"},
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    return ids


def serve_all(api: str, key: str, ids: list[str]) -> dict[str, Any]:
    """Right after the burst: every photo's screen copy fetched once over ``CONCURRENCY``
    clients; a copy not made yet is made by that view (or is waited for). Seconds until all."""
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
        urls = [
            m["screen"]
            for cid in ids
            for m in c.get(f"{api}/api/v1/incidents/{cid}/media").json()["items"]
        ]
    statuses: list[int] = []
    lock = threading.Lock()
    todo = list(urls)

    def run() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
            while True:
                with lock:
                    if not todo:
                        return
                    u = todo.pop()
                r = c.get(f"{api}{u}")
                with lock:
                    statuses.append(r.status_code)

    threads = [threading.Thread(target=run) for _ in range(CONCURRENCY)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "photos": len(urls),
        "ok": sum(1 for s in statuses if s == 200),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def first_view(api: str, key: str, ids: list[str], photo: bytes) -> dict[str, Any]:
    """One at a time: a photo uploaded, then at once its screen copy (made by the finisher or
    by this view, whichever is first: the wait until it exists), its thumb and the screen
    again (both cached)."""
    out: dict[str, list[float]] = {"first": [], "thumb_cached": [], "screen_cached": []}
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        for i, one in enumerate(variants(photo, 12)):
            r = c.post(
                f"{api}/api/v1/incidents/{ids[i // PER_CASE]}/media",
                files=[("media", ("IMG.jpg", one, "image/jpeg"))],
            )
            assert r.status_code == 201, r.text
            m = r.json()["items"][0]
            for what, url in (
                ("first", m["screen"]),
                ("thumb_cached", m["thumb"]),
                ("screen_cached", m["screen"]),
            ):
                t0 = time.perf_counter()
                r = c.get(f"{api}{url}")
                out[what].append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text
    return {
        k: {
            "n": len(v),
            "p50_ms": round(percentile(v, 50), 1),
            "p90_ms": round(percentile(v, 90), 1),
        }
        for k, v in out.items()
    }


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


def stages(photo: bytes, folder: Path, runs: int = 7) -> dict[str, Any]:
    """Where one photo's time goes, stage by stage, in this process, one at a time before the
    servers start (median of ``runs``, ms); the copies' own steps as ``gis.photos.copies``
    takes them, and the load average around it."""
    import hashlib

    from PIL import Image, ImageOps

    from gis import photos
    from layers.blobstore import FileStore

    out: dict[str, list[float]] = {}

    def timed(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        v = fn(*args, **kwargs)
        out.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
        return v

    load_before = os.getloadavg()
    store = FileStore(folder)
    for _ in range(runs):
        data = variants(photo, 1)[0]
        sha = timed(SHA, lambda d=data: hashlib.sha256(d).hexdigest())
        img = timed("sniff + header", photos._open, data, "JPEG", "image/jpeg", 40_000_000)
        timed(STRUCTURE, photos.structure, data, "image/jpeg")
        w, h = img.size
        img.draft("RGB", (w // 8, h // 8))
        timed(EIGHTH, img.load)
        timed(FULL, Image.open(io.BytesIO(data)).load)
        timed(VALIDATE, photos.validate, data, max_bytes=1 << 30, max_pixels=1 << 30)
        timed(ORIGINAL_STORE, store.put, sha, data)
        # the copies, step by step as gis.photos.copies takes them
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (w * SCREEN_PX // max(w, h), h * SCREEN_PX // max(w, h)))
        timed(HALF, img.load)
        timed(
            RESAMPLE,
            img.thumbnail,
            (SCREEN_PX, SCREEN_PX),
            Image.Resampling.BILINEAR,
            reducing_gap=2.0,
        )
        img = timed(TURN, ImageOps.exif_transpose, img)
        img = timed(REBUILD, lambda im=img: Image.frombytes("RGB", im.size, im.tobytes()))
        timed(ENCODE_SCREEN, photos._encode, img)
        small = img.copy()
        timed(
            THUMB, small.thumbnail, (THUMB_PX, THUMB_PX), Image.Resampling.BICUBIC, reducing_gap=1.5
        )
        timed(ENCODE_THUMB, photos._encode, small)
        thumb, screen = timed(COPIES, photos.copies, data, thumb_px=THUMB_PX, screen_px=SCREEN_PX)

        def store_copies(sha: str = sha, thumb: Any = thumb, screen: Any = screen) -> None:
            store.put(sha + ".thumb.jpg", thumb.data)
            store.put(sha + ".screen.jpg", screen.data)

        timed(COPIES_STORE, store_copies)
    return {
        "ms": {k: round(percentile(v, 50), 1) for k, v in out.items()},
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }


def report(r: dict[str, Any], base: bytes) -> None:
    rounds = r["rounds"]
    paired = []
    for one in rounds:
        bare, full, cp = one["bare"], one["full"], one["copies"]
        to_copies_s = full["seconds"] + cp["seconds"]
        paired.append(
            {
                "bare": bare["per_s"],
                "answered": full["per_s"],
                "to_copies": full["photos"] / to_copies_s,
                "ok": min(full["ok"], cp["ok"], bare["ok"]),
                "photos": full["photos"],
            }
        )
    answered = sorted(p["answered"] / p["bare"] for p in paired)
    to_copies = sorted(p["to_copies"] / p["bare"] for p in paired)
    med_answered, med_copies = _median(answered), _median(to_copies)
    per_round = [
        {
            "round": i + 1,
            "bare write photos/s": round(p["bare"], 2),
            "answered photos/s": round(p["answered"], 2),
            "answered / bare": f"{p['answered'] / p['bare']:.0%}",
            "to both copies photos/s": round(p["to_copies"], 2),
            "to both copies / bare": f"{p['to_copies'] / p['bare']:.0%}",
            "ok": f"{p['ok']}/{p['photos']}",
        }
        for i, p in enumerate(paired)
    ]
    lat = r["latency"]
    st = r["stages"]["ms"]
    added = lat["one_photo"]["p50_ms"] - lat["json"]["p50_ms"]
    fv = r["first_view"]
    bare_med = _median(sorted(p["bare"] for p in paired))
    bare_ms = 1000 / bare_med
    copy_steps = [HALF, RESAMPLE, TURN, REBUILD, ENCODE_SCREEN, THUMB, ENCODE_THUMB]
    copies_cpu = sum(st[k] for k in copy_steps)
    cores = os.cpu_count() or 2
    budget_ms = 2 * bare_ms * cores  # core-ms a photo may take at half the anchor's rate
    ls, le = r["load_start"], r["load_end"]
    sb, sa = r["stages"]["load_before"], r["stages"]["load_after"]
    if med_copies >= 0.5:
        verdict = "The goal is met at the median of the rounds."
    else:
        verdict = f"""The goal is not met. At half the anchor's median rate ({bare_med / 2:.1f}
photos/s) the server has {budget_ms:.0f} core-ms per photo on {cores} cores for everything: the
request's own path and the copies. The copies' steps alone, one photo at a time in this run, take
{copies_cpu:.0f} ms ({st[HALF]} ms of it the decode at the screen copy's DCT scale, which reads
the whole entropy-coded stream), so they alone ask for {copies_cpu / budget_ms:.0%} of that budget
before the request, the database and the event loop take their share."""
    body = f"""
{ROUNDS} rounds; in each, {PHOTOS} distinct 12-megapixel phone photos of {len(base) / 1e6:.2f} MB
(EXIF with GPS and orientation, an ICC profile) sent once each to the bare write and {PHOTOS}
others to the full path, {CONCURRENCY} at a time, one server worker each, the order of the two
alternating from round to round. Load average {ls[0]:.1f} / {ls[1]:.1f} / {ls[2]:.1f} at the
start, {le[0]:.1f} / {le[1]:.1f} / {le[2]:.1f} at the end ({cores} cores, shared).
The upload: multipart parse, content sniffing, header pixel check, the walk of the whole file's
structure (no pixel decoded), SHA-256 (once), the durable store of the original (written and
fsynced once), the media row and its audit event; then the answer. After it, every pixel is
decoded once, at the screen copy's JPEG DCT scale, the screen copy made from that decode and
the thumbnail from the screen copy, by the server's finisher threads (one per core, at a lower
CPU priority; only the first while an upload is in flight) or by the first view of a copy. "To both copies" ends when every photo's screen
copy has been fetched once right after the burst ({CONCURRENCY} at a time). Anchor: the same
stack, hashing and durably writing the bytes.

{table(per_round, list(per_round[0]))}

**Upload answered / bare write: {med_answered:.0%}**, the median of the rounds' paired ratios
(goal: at least 50 %; round by round {", ".join(f"{x:.0%}" for x in answered)}, sorted).
**Full path to both copies / bare write: {med_copies:.0%}**, the median of the paired ratios
(round by round {", ".join(f"{x:.0%}" for x in to_copies)}, sorted).

One at a time after the rounds: a photo's screen copy fetched right after its upload's answer
(made by the finisher or by the view, whichever is first) p50 {fv["first"]["p50_ms"]} / p90
{fv["first"]["p90_ms"]} ms; then its thumb {fv["thumb_cached"]["p50_ms"]} ms and the screen
again {fv["screen_cached"]["p50_ms"]} ms (p50, {fv["first"]["n"]} photos).

A report one request at a time (p50 / p90): without a photo {lat["json"]["p50_ms"]} /
{lat["json"]["p90_ms"]} ms, with one 2 MB photo {lat["one_photo"]["p50_ms"]} /
{lat["one_photo"]["p90_ms"]} ms: **{added:.0f} ms added** by the photo at the median.

Where one photo's time goes (one at a time in the benchmark's process before the servers start,
median of 7, ms; load average {sb[0]:.1f} before, {sa[0]:.1f} after):

{table([{"stage": k, "ms": v} for k, v in st.items()], ["stage", "ms"])}

The bare write takes {bare_ms:.1f} ms of wall time per photo at its median rate. {verdict}
"""
    write_section("media", "Photo uploads (bench/media.py)", body)
    print(body)
    if os.environ.get("JOINTGRID_BENCH_MEDIA_JSON"):
        Path(os.environ["JOINTGRID_BENCH_MEDIA_JSON"]).write_text(json.dumps(r))


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


if __name__ == "__main__":
    main()
