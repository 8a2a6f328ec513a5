"""Photo use-cases, called by the routes: check uploads, store them, put them on a case.

The order makes an acknowledged photo durable and never doubled:
1. every photo of the request is checked (every pixel decoded once, so a damaged file is
   refused; one bad photo refuses the whole request, naming its part's index), before anything
   is written;
2. the originals are written to the content-addressed store (fsynced; a file that is there
   already is not written again);
3. one transaction records each photo on the case (a photo already on the case is skipped:
   the table's unique key on case and hash) with one audit event carrying its SHA-256.
A crash between 2 and 3 leaves only an unreferenced file; the client's retry, under the same
Idempotency-Key or to the same case, finds the same hashes and stores nothing twice.

The served copies (thumb, screen) are not made in the request: ``served_copy`` makes both on
the first GET of either, once (concurrent first GETs wait for the one making them; across
processes the store's atomic rename keeps whole files), and caches them in the copies store.
An upload is answered after its check and its durable original, which is what it needs.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
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
from gis.errors import Conflict, DomainError, NotFound, TooManyMedia
from layers import incidents
from layers import media as media_layer
from layers.blobstore import BlobStore, FileStore
from layers.db import Conn
from layers.mapdata import district_names

KINDS = ("report", "resolution")
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
            incidents.append_event(
                conn,
                incident_id=row["id"],
                side=row["side"],
                action="add_media",
                from_status=row["status"],
                to_status=row["status"],
                actor=actor,
                actor_side=actor.get("side"),
                note=None,
                payload={
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
        **links,
    }
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


def served_copy(where: Stores, sha256: str, size: str, limits: MediaSettings) -> bytes:
    """A served copy, from the cache; made from the original (both sizes, cached) when missing."""
    key = copy_key(sha256, size)
    try:
        return where.copies.get(key)
    except KeyError:
        pass
    with _making_guard:
        lock = _making.setdefault(sha256, threading.Lock())
    try:
        with lock:
            try:
                return where.copies.get(key)  # made while this view waited for the lock
            except KeyError:
                pass
            thumb, screen = photos.copies(
                original(where, sha256), thumb_px=limits.thumb_px, screen_px=limits.screen_px
            )
            where.copies.put(copy_key(sha256, "thumb"), thumb.data)
            where.copies.put(copy_key(sha256, "screen"), screen.data)
            return thumb.data if size == "thumb" else screen.data
    finally:
        with _making_guard:
            if _making.get(sha256) is lock and not lock.locked():
                del _making[sha256]


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
    return [view(m, admin=admin, far_m=far_m) for m in media_layer.on_case(conn, case_id)]
