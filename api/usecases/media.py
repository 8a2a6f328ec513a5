"""Photo use-cases, called by the routes: check uploads, store them, put them on a case.

The order makes an acknowledged photo durable and never doubled:
1. every photo of the request is checked: its content type, its bytes, the pixels its header
   declares, and its whole structure walked without decoding (``gis.photos.validate``: a cut,
   truncated or spliced file is refused; one bad photo refuses the whole request, naming its
   part's index), before anything is written;
2. the originals are written to the content-addressed store (fsynced; a file that is there
   already is not written again);
3. one transaction records each photo on the case, ``pending`` (a photo already on the case
   is skipped: the table's unique key on case and hash), with one audit event carrying its
   SHA-256. A photo refused before (by hash) is refused again here, ``corrupt_image``.
A crash between 2 and 3 leaves only an unreferenced file; the client's retry, under the same
Idempotency-Key or to the same case, finds the same hashes and stores nothing twice.

Every pixel is decoded once, after the answer, when the served copies (thumb, screen) are
made (``finish``): by the ``Finisher``'s threads (at a lower CPU priority than requests), or
by the first GET of either copy if that comes first, whichever is first (one lock per photo).
A photo that decodes becomes ``ready``; one that does not becomes ``refused`` with an audit
event (``media_refused``) and is never served or linked. Pending photos left by a crash are
found again by the finisher's sweep.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from api.settings import MediaSettings
from api.settings import media as media_settings
from api.usecases import cases
from api.usecases.policy import Forbidden
from api.usecases.schemas import ReportIn
from gis import photos
from gis.catalogue import Catalogue
from gis.errors import Conflict, CorruptImage, DomainError, NotFound, TooManyMedia
from layers import incidents
from layers import media as media_layer
from layers.blobstore import BlobStore, FileStore
from layers.db import Conn
from layers.mapdata import district_names

log = logging.getLogger("jointgrid.media")

KINDS = ("report", "resolution")
FINISHER_ACTOR = {"kind": "system", "task": "media-check"}
# A team's photo on a case in these states is its "after" photo unless it says otherwise.
RESOLUTION_STATES = frozenset({"in_progress", "resolved"})
CLOSED_STATES = frozenset({"closed", "rejected", "duplicate"})
RESOLVING_ROLES = frozenset({"team_member", "operator", "admin"})


@dataclass(frozen=True)
class Stores:
    """The originals (private, admins only) and the served copies (a cache of derived files)."""

    originals: BlobStore
    copies: BlobStore


@cache
def stores(root: Path) -> Stores:
    """The file stores under the media folder (``JOINTGRID_MEDIA_DIR``)."""
    return Stores(FileStore(root / "originals"), FileStore(root / "copies"))


def copy_key(sha256: str, size: str) -> str:
    return f"{sha256}.{size}.jpg"


def check_all(parts: Sequence[bytes], limits: MediaSettings) -> list[photos.Checked]:
    """Check every photo of a request; the first bad one refuses all, its index in ``detail``."""
    if len(parts) > limits.max_count:
        raise TooManyMedia(
            f"{len(parts)} photos sent; a case holds at most {limits.max_count}",
            {"sent": len(parts), "max_count": limits.max_count},
        )
    out = []
    for i, data in enumerate(parts):
        try:
            out.append(
                photos.validate(data, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels)
            )
        except DomainError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {}
            exc.detail = {"part": "media", "index": i, **detail}
            exc.message = f"photo {i + 1} (media part index {i}): {exc.message}"
            raise
    return out


def store(checked: Sequence[photos.Checked], where: Stores) -> None:
    """Write the originals durably (a blob already stored is left as it is); the served copies
    are made on their first view (``served_copy``)."""
    for p in checked:
        where.originals.put(p.sha256, p.data)


def photo_added(conn: Conn, *, case: dict[str, Any], media: dict[str, Any]) -> None:
    """Called once per photo newly on a case, in the transaction that records it.

    The outbox (a ``photo added`` event for webhooks and group bots) hooks in here; nothing is
    sent from inside the request.
    """


def attach(
    conn: Conn,
    case_id: str,
    checked: Sequence[photos.Checked],
    *,
    kind: str | None,
    actor: dict[str, Any],
    limits: MediaSettings,
) -> tuple[list[dict[str, Any]], int]:
    """Put checked (and stored) photos on a case, each with its audit event, in one transaction.

    ``kind`` None picks ``resolution`` for a team's photo while the case is being handled or
    waits for its check, else ``report``. Returns (the case's photos named in the request,
    how many were new).
    """
    with conn.transaction():
        row = incidents.get(conn, case_id, for_update=True)  # one adder at a time per case
        if row["status"] in CLOSED_STATES:
            raise Conflict(
                f"the case is {row['status']}: no photos can be added",
                {"status": row["status"]},
            )
        role = actor.get("role")
        if kind is None:
            kind = (
                "resolution"
                if row["status"] in RESOLUTION_STATES and role in RESOLVING_ROLES
                else "report"
            )
        if kind == "resolution" and role not in RESOLVING_ROLES:
            raise Forbidden("only the team, an operator or an admin adds a resolution photo")
        known_bad = media_layer.refused(conn, (p.sha256 for p in checked))
        for i, p in enumerate(checked):
            if p.sha256 in known_bad:
                raise CorruptImage(
                    f"photo {i + 1} (media part index {i}) was refused before: it does not "
                    "decode; take or export it again",
                    {"part": "media", "index": i, "sha256": p.sha256, **known_bad[p.sha256]},
                )
        on_case = media_layer.hashes_on(conn, row["id"])
        new = [p for p in _unique(checked) if p.sha256 not in on_case]
        if len(on_case) + len(new) > limits.max_count:
            raise TooManyMedia(
                f"the case has {len(on_case)} photos; {len(new)} more would pass the limit of "
                f"{limits.max_count}",
                {"on_case": len(on_case), "sent_new": len(new), "max_count": limits.max_count},
            )
        for p in new:
            m = media_layer.insert(
                conn,
                incident_id=row["id"],
                sha256=p.sha256,
                kind=kind,
                added_by=actor,
                content_type=p.content_type,
                size=len(p.data),
                width=p.width,
                height=p.height,
                gps=p.gps,
                taken_at=p.taken_at,
                public_token=secrets.token_urlsafe(24),
            )
            if m is None:  # cannot happen under the row lock; kept honest rather than assumed
                continue
            _photo_event(
                conn,
                row,
                "add_media",
                actor,
                {
                    "sha256": p.sha256,
                    "kind": kind,
                    "content_type": p.content_type,
                    "bytes": len(p.data),
                },
            )
            photo_added(conn, case=row, media=m)
        wanted = {p.sha256 for p in checked}
        items = [m for m in media_layer.on_case(conn, row["id"]) if m["sha256"] in wanted]
    return items, len(new)


def _photo_event(
    conn: Conn, case: dict[str, Any], action: str, actor: dict[str, Any], payload: dict[str, Any]
) -> None:
    """A photo's audit event on its case's trail; the case's status does not change."""
    incidents.append_event(
        conn,
        incident_id=case["id"],
        side=case["side"],
        action=action,
        from_status=case["status"],
        to_status=case["status"],
        actor=actor,
        actor_side=actor.get("side"),
        note=None,
        payload=payload,
    )


def _unique(checked: Sequence[photos.Checked]) -> list[photos.Checked]:
    seen: dict[str, photos.Checked] = {}
    for p in checked:
        seen.setdefault(p.sha256, p)
    return list(seen.values())


def report_with_media(
    conn: Conn,
    body: ReportIn,
    catalogue: Catalogue,
    checked: Sequence[photos.Checked],
    *,
    idempotency_key: str | None,
    actor: dict[str, Any],
    limits: MediaSettings,
) -> tuple[dict[str, Any], bool]:
    """A report and its photos as one case, atomically; a retry returns the first case.

    "The same body" for the Idempotency-Key is the same report JSON and the same photo hashes.
    """
    with conn.transaction():
        case, created = cases.report(
            conn,
            body,
            catalogue,
            idempotency_key=idempotency_key,
            actor=actor,
            media_hashes=[p.sha256 for p in checked],
        )
        if created and checked:
            attach(conn, case["id"], checked, kind="report", actor=actor, limits=limits)
    return case, created


# -- views ---------------------------------------------------------------------------------


def urls(case_id: str, sha256: str) -> dict[str, str]:
    base = f"/api/v1/incidents/{case_id}/media/{sha256}"
    return {"thumb": f"{base}/thumb", "screen": f"{base}/screen", "original": f"{base}/original"}


def public_url(token: str) -> str:
    """The capability URL of a photo's stripped screen copy (no case access needed)."""
    return f"/media/public/{token}"


def view(m: dict[str, Any], *, admin: bool, far_m: float) -> dict[str, Any]:
    """One photo as the API shows it; its own position and the original only to admins."""
    links = urls(m["incident_id"], m["sha256"])
    if not admin:
        links.pop("original")
    by = m["added_by"] or {}
    out = {
        "sha256": m["sha256"],
        "kind": m["kind"],
        "added_at": _iso(m["added_at"]),
        "added_by": {"role": by.get("role"), "side": by.get("side"), "team": by.get("team")},
        "content_type": m["content_type"],
        "bytes": m["bytes"],
        "width": m["width"],
        "height": m["height"],
        "has_gps": m["gps_lon"] is not None,
        "distance_m": None if m["distance_m"] is None else round(m["distance_m"], 1),
        "far": m["distance_m"] is not None and m["distance_m"] > far_m,
        "taken_at": _iso(m["taken_at"]),
        "seconds_before_report": m["seconds_before_report"],
        # pending: acknowledged, its copies (and full decode) still to be made; refused: it did
        # not decode, and none of its links answers but the admin's original
        "state": m["state"],
        **links,
    }
    if m["state"] == "refused":
        out["refusal"] = m["refusal"] or {"code": "corrupt_image"}
    if admin:
        out["gps"] = (
            None
            if m["gps_lon"] is None
            else {"type": "Point", "coordinates": [m["gps_lon"], m["gps_lat"]]}
        )
    return out


def _iso(v: datetime | None) -> str | None:
    return None if v is None else v.isoformat()


def original(where: Stores, sha256: str) -> bytes:
    """The stored original; ``NotFound`` (naming the check to run) if its file is gone."""
    try:
        return where.originals.get(sha256)
    except KeyError:
        raise NotFound(
            "the photo is on record but its file is missing from the store; "
            "an admin should run `jointgrid audit-trail verify`",
            {"sha256": sha256},
        ) from None


# One lock per photo whose copies are being made, so that concurrent first views make them once.
_making: dict[str, threading.Lock] = {}
_making_guard = threading.Lock()


@contextlib.contextmanager
def _one_maker(sha256: str) -> Iterator[None]:
    with _making_guard:
        lock = _making.setdefault(sha256, threading.Lock())
    try:
        with lock:
            yield
    finally:
        with _making_guard:
            if _making.get(sha256) is lock and not lock.locked():
                del _making[sha256]


def make_copies(where: Stores, sha256: str, limits: MediaSettings) -> tuple[bytes, bytes]:
    """(thumb, screen) of a stored original: from the cache, else decoded (every pixel, once:
    the full check) and stored. ``CorruptImage`` when the original does not decode."""
    with _one_maker(sha256):
        try:
            return (
                where.copies.get(copy_key(sha256, "thumb")),
                where.copies.get(copy_key(sha256, "screen")),
            )
        except KeyError:
            pass  # not made yet (or made by another process while this one waited: rare)
        thumb, screen = photos.copies(
            original(where, sha256), thumb_px=limits.thumb_px, screen_px=limits.screen_px
        )
        where.copies.put(copy_key(sha256, "thumb"), thumb.data)
        where.copies.put(copy_key(sha256, "screen"), screen.data)
        return thumb.data, screen.data


def served_copy(where: Stores, sha256: str, size: str, limits: MediaSettings) -> bytes:
    """A served copy, from the cache; made from the original (both sizes, cached) when missing.

    ``CorruptImage`` when the original does not decode (the caller records the refusal)."""
    try:
        return where.copies.get(copy_key(sha256, size))
    except KeyError:
        pass
    thumb, screen = make_copies(where, sha256, limits)
    return thumb if size == "thumb" else screen


def refusal_of(exc: CorruptImage) -> dict[str, Any]:
    detail = exc.detail if isinstance(exc.detail, dict) else {}
    return {"code": exc.code, "reason": str(detail.get("reason", ""))[:200]}


def record_finished(conn: Conn, sha256: str, refusal: dict[str, Any] | None) -> int:
    """The outcome of a photo's full decode, in one transaction: its pending records become
    ``ready``, or ``refused`` each with a ``media_refused`` audit event carrying its SHA-256
    and the reason. Returns how many records changed (0: already recorded)."""
    with conn.transaction():
        if refusal is None:
            return media_layer.mark_ready(conn, sha256)
        # The cases first (their rows locked in a fixed order, as adders lock them), then the
        # photos: one appender at a time per case's trail.
        for case_id in sorted(media_layer.pending_cases(conn, sha256)):
            incidents.get(conn, case_id, for_update=True)
        rows = media_layer.mark_refused(conn, sha256, refusal)
        for r in rows:
            _photo_event(
                conn,
                {"id": r["incident_id"], "side": r["side"], "status": r["status"]},
                "media_refused",
                FINISHER_ACTOR,
                {"sha256": sha256, "kind": r["kind"], **refusal},
            )
        return len(rows)


def finish(conn: Conn, where: Stores, sha256: str, limits: MediaSettings) -> str:
    """Make a photo's copies (its full decode) and record the outcome; its state after."""
    try:
        make_copies(where, sha256, limits)
    except CorruptImage as exc:
        record_finished(conn, sha256, refusal_of(exc))
        return "refused"
    record_finished(conn, sha256, None)
    return "ready"


class Finisher:
    """The server's threads that finish photos after their upload was answered.

    ``submit`` queues hashes (the routes, after their transaction); ``sweep`` queues what is
    still pending in the database (on start, and every ``sweep_s``: photos left by a crash or
    by another process). The threads, one per core by default (Pillow lets go of the GIL while
    it decodes, resamples and encodes, so they run in parallel), run at a lower CPU priority
    than the requests, so a burst of uploads is answered first and its copies follow; while
    any upload is in flight (``uploading``, around the routes' work) only the first thread
    takes photos, leaving the other cores to the requests. Each unit of work takes a database
    connection from ``connection`` only to record its outcome.

    The queue is bounded (``queue_size``) and ``submit`` never blocks a request: a hash that
    does not fit is left to the sweep. Nothing acknowledged is lost that way, nor by a crash
    or a stop with work queued: the original is durable and its record ``pending`` before the
    answer, so the next sweep (or the first view of a copy) finishes it.
    """

    def __init__(
        self,
        connection: Callable[[], contextlib.AbstractContextManager[Conn]],
        where: Stores,
        limits: MediaSettings,
        *,
        threads: int = 0,
        nice: int = 10,
        sweep_s: float = 60.0,
        queue_size: int = 256,
    ) -> None:
        self.connection = connection
        self.where = where
        self.limits = limits
        self.nice = nice
        self.sweep_s = sweep_s
        n_threads = threads or os.cpu_count() or 2
        # room for the stop's end markers after the queue is drained
        self.queue: queue.Queue[str | None] = queue.Queue(maxsize=max(queue_size, n_threads))
        self.left_to_sweep = 0  # hashes submitted while the queue was full
        self._queued: set[str] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._idle = threading.Condition(self._guard)
        self._busy = 0
        self._uploads = 0  # requests between their body's first byte and their answer
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"jointgrid-media-{i}", daemon=True)
            for i in range(n_threads)
        ]
        self._sweeper = threading.Thread(target=self._sweep_loop, name="jointgrid-media-sweep")
        self._sweeper.daemon = True

    def start(self) -> Finisher:
        for t in self._threads:
            t.start()
        self._sweeper.start()
        return self

    def submit(self, sha256s: Iterable[str]) -> int:
        """Queue what is not queued yet, as far as the queue has room; how many were queued."""
        n = 0
        with self._guard:
            if self._stop.is_set():
                return 0
            for sha in sha256s:
                if sha in self._queued:
                    continue
                try:
                    self.queue.put_nowait(sha)
                except queue.Full:
                    self.left_to_sweep += 1  # pending on record: the sweep queues it later
                    continue
                self._queued.add(sha)
                n += 1
        return n

    def sweep(self, *, older_than_s: float = 0) -> int:
        """Queue the photos still pending in the database; how many."""
        with self.connection() as conn:
            shas = media_layer.pending(conn, older_than_s=older_than_s, limit=1000)
        self.submit(shas)
        return len(shas)

    def wait_idle(self, timeout: float) -> bool:
        """Until nothing is queued or being finished (for tests and the benchmark)."""
        end = time.monotonic() + timeout
        with self._idle:
            while self._queued or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def stop(self, timeout: float = 15.0) -> None:
        """Finish the photos being made, drop what is queued (still pending on record, for the
        next start's sweep), and end the threads."""
        self._stop.set()
        with self._guard:
            with contextlib.suppress(queue.Empty):
                while True:
                    sha = self.queue.get_nowait()
                    if sha is not None:
                        self._queued.discard(sha)
            self._idle.notify_all()
        for _ in self._threads:
            self.queue.put(None)
        for t in self._threads:
            t.join(timeout=timeout)

    @contextlib.contextmanager
    def uploading(self) -> Iterator[None]:
        """Around an upload's request: while any is in flight, only the first thread
        finishes photos, so the requests keep the other cores and are answered first."""
        with self._guard:
            self._uploads += 1
        try:
            yield
        finally:
            with self._guard:
                self._uploads -= 1
                self._idle.notify_all()

    def _run(self, index: int) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        while True:
            if index:  # before taking a photo, so that the first thread can take it meanwhile
                with self._guard:
                    while self._uploads and not self._stop.is_set():
                        self._idle.wait(1.0)
            sha = self.queue.get()
            if sha is None:
                return
            with self._guard:
                self._busy += 1
            try:
                with self.connection() as conn:
                    state = finish(conn, self.where, sha, self.limits)
                if state == "refused":
                    log.warning("photo %s refused after its upload: it does not decode", sha)
            except Exception:  # the sweep tries again; a missing original is verify's to find
                log.warning("finishing photo %s failed; the sweep retries", sha, exc_info=True)
            finally:
                with self._guard:
                    self._busy -= 1
                    self._queued.discard(sha)
                    self._idle.notify_all()

    def _sweep_loop(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                # On start everything pending; later only what the requests' own submits
                # should have finished by now.
                self.sweep(older_than_s=0 if first else self.sweep_s)
                first = False
            except Exception:
                log.warning("the photo sweep failed; retrying later", exc_info=True)
            self._stop.wait(self.sweep_s)


def gallery_context(conn: Conn, case: dict[str, Any], *, admin: bool) -> dict[str, Any]:
    """What ``templates/media_gallery.html`` needs for one case (include it in a case page)."""
    limits = media_settings()
    return {
        "media_items": [
            view(m, admin=admin, far_m=limits.far_m) for m in media_layer.on_case(conn, case["id"])
        ],
        "media_far_m": limits.far_m,
        "media_side_names": district_names(conn),
    }


def thumbnails(conn: Conn, case_id: str, *, admin: bool) -> list[dict[str, Any]]:
    """A case's photos as views, for the map popup's thumbnails."""
    far_m = media_settings().far_m
    return [
        view(m, admin=admin, far_m=far_m)
        for m in media_layer.on_case(conn, case_id)
        if m["state"] != "refused"
    ]
