"""``GET /i18n/{locale}.json``: the message catalogue for the browser scripts.

The same text the server renders with (``api.i18n``), so scripts never carry strings of their
own. Cacheable: the URL the pages use carries the catalogue's hash (``api.i18n.json_url``), and
the answer has an ETag.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api import i18n
from api.access import allow
from gis.errors import NotFound

router = APIRouter(tags=["pages"])


@router.get(
    "/i18n/{locale}.json",
    dependencies=[allow(anyone=True)],
    summary="The message catalogue of one language (zh_CN, en) as JSON",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
def catalogue_json(locale: str, request: Request) -> Response:
    if locale.replace("-", "_") not in i18n.LOCALES:
        raise NotFound(f"no messages for {locale[:20]!r}", {"locales": list(i18n.LOCALES)})
    body, etag = i18n.export(locale.replace("-", "_"))
    headers = {"ETag": etag, "Cache-Control": "public, max-age=86400"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
