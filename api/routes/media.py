"""Photos on cases: add, list and serve them; the public capability link of the screen copy.

Case-scoped URLs follow the case's own access rule (a key that may not see the case gets 404,
as if it did not exist); originals, with their metadata, go to admins alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from api import errors, settings
from api.access import CASE_ROLES, Principal, allow
from api.deps import CatalogueDep, Conn, Db, app_limiter
from api.routes.incidents import _visible
from api.usecases import media
from api.usecases.policy import Forbidden
from gis.errors import (
    CorruptImage,
    InvalidInput,
    MediaTooLarge,
    NotFound,
    UnsupportedMediaType,
)
from gis.photos import Checked
from layers import media as media_layer

router = APIRouter(tags=["media"])

# Photos are checked on threads of their own, at most one per core. (Their pixels are decoded
# after the answer, by the app's media finisher, or by the first view of a copy.)
MEDIA_THREADS = os.cpu_count() or 2
SHA256 = r"^[0-9a-f]{64}$"

# The OpenAPI descriptions of the routes: what a photo's record says (README, "Photos").
PHOTO_FIELDS = """
Each photo in `items`: `sha256`, `kind` (`report` or `resolution`), `added_at`, `added_by`
(`role`, `side`, `team`), `content_type`, `bytes`, `width`, `height`, `has_gps`, `distance_m`
(from the report's point; null without GPS), `far`, `taken_at` (EXIF, Asia/Shanghai unless
the photo gives its offset), `seconds_before_report`, the `thumb` and `screen` URLs (and
`original`, for admins, with `gps`), and its `state`:

- `pending`: the upload is answered (the original durable, the record and its `add_media`
  audit event committed); its pixels are not decoded yet. Its copies answer as soon as they are
  made: by the server's finisher soon after the answer, or by their first view.
- `ready`: decoded, both stripped copies made.
- `refused`: its structure passed the upload's check but its pixels do not decode. Only then
  the photo also has `refusal`: `{"code": "corrupt_image", "reason": "..."}`. Its copies and
  its public link answer 404 (`detail.state` = `refused`, `detail.refusal`); the feeds, the map
  popup and the dashboard leave it out; admins still download the original. Each case it is on
  gets a `media_refused` audit event (its payload `sha256`, `kind`, `code`, `reason`), sent to
  webhook subscribers as `incident.media_refused`. The same bytes sent again are refused at
  once, `corrupt_image` (422) with `detail.index`.
"""

MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "media": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "photos: JPEG, PNG, WebP or HEIC, recognised by content",
        },
        "kind": {"type": "string", "enum": list(media.KINDS)},
    },
    "required": ["media"],
}


@dataclass
class Upload:
    """A multipart request: the photo parts' bytes, and its text fields."""

    photos: list[bytes] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_upload(request: Request, *, allowed: set[str]) -> Upload:
    """Read a multipart body: parts named ``media`` are photos, the others named in ``allowed``."""
    limits = settings.media()
    form = await request.form(
        # The count is checked by us, to answer too_many_media rather than a parser's 400.
        max_files=limits.max_count * 4 + 4,
        max_fields=len(allowed) + 4,
        max_part_size=request.app.state.max_body_bytes,
    )
    out = Upload()
    try:
        for name, value in form.multi_items():
            if name == "media":
                if not isinstance(value, UploadFile):
                    raise InvalidInput(
                        "a media part must be a file (a photo), not a text field",
                        {"part": "media", "index": len(out.photos)},
                    )
                if value.size is not None and value.size > limits.max_bytes:
                    raise MediaTooLarge(
                        f"photo {len(out.photos) + 1} is {value.size:,} bytes; at most "
                        f"{limits.max_bytes:,} are accepted",
                        {
                            "part": "media",
                            "index": len(out.photos),
                            "bytes": value.size,
                            "max_bytes": limits.max_bytes,
                        },
                    )
                out.photos.append(await value.read())
            elif name in allowed:
                if name in out.fields:
                    raise InvalidInput(f"the part {name!r} is given twice", {"part": name})
                text = await value.read() if isinstance(value, UploadFile) else value
                out.fields[name] = text.decode("utf-8") if isinstance(text, bytes) else text
            else:
                raise InvalidInput(
                    f"unknown part {name[:40]!r}",
                    {"part": name[:40], "valid": ["media", *sorted(allowed)]},
                )
    except UnicodeDecodeError as exc:
        raise InvalidInput("a text part is not UTF-8", {"reason": str(exc)[:200]}) from exc
    finally:
        await form.close()
    return out


async def check_photos(request: Request, parts: list[bytes]) -> list[Checked]:
    """Check and process the photos off the event loop, then store them durably."""
    limits = settings.media()

    def work() -> list[Checked]:
        checked = media.check_all(parts, limits)
        media.store(checked, media.stores(limits.dir))
        return checked

    return await anyio.to_thread.run_sync(
        work, limiter=app_limiter(request, "media_limiter", MEDIA_THREADS)
    )


@contextlib.contextmanager
def uploading(request: Request) -> Iterator[None]:
    """Tell the app's finisher that an upload is in flight (``media.Finisher.uploading``)."""
    finisher = getattr(request.app.state, "media_finisher", None)
    if finisher is None:
        yield
        return
    with finisher.uploading():
        yield


def finish_later(request: Request, checked: list[Checked]) -> None:
    """Hand the photos of an answered request to the app's finisher (when the server runs
    one; without it, the first view of a copy finishes the photo)."""
    finisher = getattr(request.app.state, "media_finisher", None)
    if finisher is not None and checked:
        finisher.submit(p.sha256 for p in checked)


def refused(m: dict[str, Any]) -> NotFound:
    return NotFound(
        "the photo was refused after its upload: it does not decode",
        {"sha256": m["sha256"], "state": "refused", "refusal": m["refusal"] or {}},
    )


def copy_of(conn: Any, m: dict[str, Any], size: str) -> bytes | NotFound:
    """A served copy of a photo on record, or the refusal to answer: a photo refused (now,
    by this view's decode, or before) is never served. The refusal is returned, not raised:
    its record is committed and stays whatever the answer."""
    if m["state"] == "refused":
        return refused(m)
    limits = settings.media()
    where = media.stores(limits.dir)
    try:
        data = media.served_copy(where, m["sha256"], size, limits)
    except CorruptImage as exc:
        media.record_finished(conn, m["sha256"], media.refusal_of(exc))
        return refused({**m, "refusal": media.refusal_of(exc)})
    if m["state"] == "pending":
        media.record_finished(conn, m["sha256"], None)
    return data


def answer(request: Request, exc: NotFound) -> Response:
    return errors.render_domain(exc, request.url.path, errors.wanted_locale(request))


@router.post(
    "/api/v1/incidents/{case_id}/media",
    status_code=201,
    summary="Add photos to a case (multipart/form-data, parts named media; optional kind)",
    description="Every photo is checked before anything is stored (JPEG, PNG, WebP or HEIC by "
    "content; size, pixels, count; its whole structure): one bad photo refuses the request, with "
    "its code and `detail.index`. The answer lists the case's photos named in the request, "
    "each `pending` until decoded.\n" + PHOTO_FIELDS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": MULTIPART_SCHEMA}},
        }
    },
    responses={200: {"description": "every photo sent was on the case already"}},
)
async def post_media(
    case_id: str, request: Request, who: Annotated[Principal, allow(*CASE_ROLES)]
) -> Response:
    if not is_multipart(request):
        raise UnsupportedMediaType(
            "send the photos as multipart/form-data, in parts named media",
            {"accepted": ["multipart/form-data"]},
        )
    db = Db(request)
    with uploading(request):  # the finisher leaves the other cores to uploads
        row = await db.run(lambda conn: _visible(conn, who, case_id))  # 404 before any work
        upload = await read_upload(request, allowed={"kind"})
        kind = upload.fields.get("kind")
        if kind is not None and kind not in media.KINDS:
            raise InvalidInput("kind must be report or resolution", {"kind": kind[:40]})
        if not upload.photos:
            raise InvalidInput("no photos: send them in parts named media", {"part": "media"})
        checked = await check_photos(request, upload.photos)
        limits = settings.media()
        items, new = await db.run(
            media.attach, row["id"], checked, kind=kind, actor=who.actor(), limits=limits
        )
    finish_later(request, checked)
    doc = {
        "id": row["id"],
        "code": row["code"],
        "added": new,
        "items": [media.view(m, admin=who.role == "admin", far_m=limits.far_m) for m in items],
    }
    return Response(
        orjson.dumps(doc), media_type="application/json", status_code=201 if new else 200
    )


@router.get(
    "/api/v1/incidents/{case_id}/media",
    summary="The photos of a case, oldest first",
    description="The case's photos and the upload limits (`limits`).\n" + PHOTO_FIELDS,
)
def list_media(
    case_id: str, conn: Conn, who: Annotated[Principal, allow(*CASE_ROLES)]
) -> dict[str, Any]:
    row = _visible(conn, who, case_id)
    limits = settings.media()
    items = media_layer.on_case(conn, row["id"])
    return {
        "id": row["id"],
        "code": row["code"],
        "count": len(items),
        "items": [media.view(m, admin=who.role == "admin", far_m=limits.far_m) for m in items],
        "limits": limits.limits(),
    }


EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/heic": "heic"}


def size_free(case_id: str, sha256: str) -> str:
    return media.urls(case_id, sha256)["screen"]


IMMUTABLE = "max-age=31536000, immutable"  # content-addressed: a URL's bytes never change
# A photo is never a page: even an original that is also HTML (a polyglot) cannot run or load
# anything when opened from its URL.
SANDBOX = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


@router.get(
    "/api/v1/incidents/{case_id}/media/{sha256}/{size}",
    summary="A photo of a case: its stripped thumb or screen copy, or (admins) the original",
    description="A `pending` photo's copy is made by this view if the finisher has not made it "
    "yet. A `refused` photo's copies answer 404 with `detail.state` = `refused` and "
    "`detail.refusal` (`code`, `reason`); its original still goes to admins.",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def get_media_file(
    request: Request,
    case_id: str,
    sha256: str,
    size: Literal["thumb", "screen", "original"],
    conn: Conn,
    who: Annotated[Principal, allow(*CASE_ROLES)],
) -> Response:
    row = _visible(conn, who, case_id)
    m = media_layer.one(conn, row["id"], sha256.lower())
    if m is None:
        raise NotFound("no such photo on this case", {"sha256": sha256[:64]})
    headers = {"Cache-Control": "private, " + IMMUTABLE, **SANDBOX}
    if size == "original":
        if who.role != "admin":
            raise Forbidden(
                "originals keep the reporter's metadata: only admins download them",
                {"use": f"{size_free(row['id'], m['sha256'])}"},
            )
        name = f"{row['code']}-{m['sha256'][:12]}.{EXTENSIONS.get(m['content_type'], 'bin')}"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
        where = media.stores(settings.media().dir)
        return Response(
            media.original(where, m["sha256"]), media_type=m["content_type"], headers=headers
        )
    data = copy_of(conn, m, size)
    if isinstance(data, NotFound):
        return answer(request, data)
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get(
    "/media/public/{token}",
    summary="The stripped screen copy of a photo, by its public capability link (feeds)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def get_public_media(
    request: Request,
    token: str,
    conn: Conn,
    catalogue: CatalogueDep,
    who: Annotated[Principal, allow(anyone=True)],
) -> Response:
    m = media_layer.by_token(conn, token[:100])
    if m is None or m["category"] in catalogue.sensitive_categories or m["state"] == "refused":
        raise NotFound("no such photo", {})
    data = copy_of(conn, m, "screen")
    if isinstance(data, NotFound):
        return answer(request, NotFound("no such photo", {}))
    return Response(
        data,
        media_type="image/jpeg",
        headers={"Cache-Control": "public, " + IMMUTABLE, **SANDBOX},
    )


async def post_report_with_media(
    request: Request, who: Principal, idempotency_key: str | None
) -> Response:
    """``POST /api/v1/incidents`` as multipart: the part ``report`` and photos named ``media``."""
    from api.routes.incidents import case_response, report_body

    with uploading(request):  # the finisher leaves the other cores to uploads
        upload = await read_upload(request, allowed={"report"})
        raw = upload.fields.get("report")
        if raw is None:
            raise InvalidInput(
                "a multipart report needs a part named report with the JSON body",
                {"part": "report"},
            )
        body = await report_body(request, raw.encode("utf-8"))
        checked = await check_photos(request, upload.photos)
        limits = settings.media()
        case, created = await Db(request).run(
            media.report_with_media,
            body,
            request.app.state.catalogue,
            checked,
            idempotency_key=idempotency_key,
            actor=who.actor(),
            limits=limits,
        )
    if created:
        finish_later(request, checked)
    return case_response(case, created)
