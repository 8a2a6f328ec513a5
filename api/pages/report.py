"""``/report``: the grid worker's report page, for a phone with a weak signal.

The page is rendered here with the whole category catalogue in it, so it needs no further
request to be filled in. Reports go to ``POST /api/v1/incidents``; each gets its
Idempotency-Key when it is made and waits in the phone's storage until the server accepts it
(see ``static/report.js``).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api import i18n, settings
from api.access import CASE_ROLES, Principal, allow
from api.deps import CatalogueDep, Conn
from api.pages import config
from api.security import nonce_of
from api.settings import MapSettings
from layers import mapdata

router = APIRouter(tags=["report"])

# The map layers the report page draws under the pin: public geometry that a grid worker may
# load (api.pages.mapview.FIELD_VIEWS). The outlines are loaded once, at one zoom's detail
# (``z``) whatever the phone's screen: the service worker precaches that same URL, so a repeat
# visit draws them from its cache, and they stay sharp enough when the worker zooms in.
OUTLINE_ZOOM = 10
PAGE_LAYERS = (
    {
        "url": "/map/data/layers/districts",
        "z": OUTLINE_ZOOM,
        "style": {"color": "#222", "weight": 2, "fill": False},
    },
    {
        "url": "/map/data/layers/border_line",
        "z": OUTLINE_ZOOM,
        "style": {"color": "#e31a1c", "weight": 3},
    },
    {
        "url": "/map/data/layers/villages",
        "min_zoom": 12,
        "by_bbox": True,
        "style": {"color": "#888", "weight": 1, "fill": False, "dashArray": "2 3"},
    },
)
LEAFLET_FILES = (
    "leaflet/dist/leaflet.js",
    "leaflet/dist/leaflet.css",
    "leaflet/dist/images/marker-icon.png",
    "leaflet/dist/images/marker-icon-2x.png",
    "leaflet/dist/images/marker-shadow.png",
    "leaflet/dist/images/layers.png",
    "leaflet/dist/images/layers-2x.png",
)
# Pages other than /report that a role may open, for the header's links (no dead links).
PAGE_LINKS: dict[str, tuple[tuple[str, str], ...]] = {
    "operator": (("/map", "指挥地图"),),
    "admin": (("/map", "指挥地图"),),
}


@cache
def script_text() -> dict[str, str]:
    """The Chinese text the page's script shows, from the one catalogue."""
    return {k: v for k, v in i18n.messages().items() if k.startswith(SCRIPT_TEXT)}


@cache
def service_worker_script() -> tuple[str, str]:
    """The report page's service worker (``static/report-sw.js``) with what it precaches, and
    its version: a digest of the script and of every precached URL, whose own URLs carry the
    digests of their files, so any change to the page's files installs a new cache."""
    precache = [
        "/report",
        config.static("report.js"),
        config.static("report.css"),
        *(config.asset(f) for f in LEAFLET_FILES),
        # The outlines, at the zoom the page asks for them.
        *(f"{spec['url']}?z={spec['z']}" for spec in PAGE_LAYERS if "z" in spec),
    ]
    body = (config.STATIC_DIR / "report-sw.js").read_text(encoding="utf-8")
    version = hashlib.sha256((body + "\n".join(precache)).encode()).hexdigest()[:16]
    head = f"const PRECACHE = {json.dumps(precache)};\nconst VERSION = {json.dumps(version)};\n"
    return head + body, version


@router.get(
    "/report-sw.js",
    dependencies=[allow(anyone=True)],
    summary="The report page's service worker: it opens the page with no signal",
    response_class=Response,
)
def report_service_worker(request: Request) -> Response:
    text, version = service_worker_script()
    # Checked after every visit: the browser revalidates it with its ETag, and an unchanged
    # worker costs a 304 with no body.
    headers = {"Cache-Control": "no-cache", "ETag": f'"{version}"'}
    if headers["ETag"] in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(text, media_type="text/javascript", headers=headers)


# Where typed or pasted numbers come from, asked in plain words; GPS and map taps need no
# question (the phone's GPS is WGS84, a tap is in the map's own frame).
COORD_SOURCES = ("wgs84", "gcj02", "bd09")
# The catalogue's keys the page's script reads (the page needs no further request for text).
SCRIPT_TEXT = ("report.", "status.", "category.", "mechanism.", "side.", "severity.")


@router.get("/report", response_class=HTMLResponse, summary="The grid worker's report page")
def report_page(
    request: Request,
    conn: Conn,
    catalogue: CatalogueDep,
    who: Annotated[Principal, allow(*CASE_ROLES)],
    map_: Annotated[
        Literal["on", "off"],
        Query(alias="map", description="off: the form without the map (GPS or typed numbers)"),
    ] = "on",
) -> HTMLResponse:
    tiles = MapSettings()
    media_limits = settings.media().limits()
    w, s, e, n = mapdata.extent(conn) or (105.07, 29.79, 106.02, 30.59)
    page_config = {
        "post_url": "/api/v1/incidents",
        "map_crs": tiles.tiles_crs,
        "tiles_url": tiles.tiles_url,
        "tiles_attribution": tiles.tiles_attribution,
        "bounds": [[s, w], [n, e]],
        "layers": list(PAGE_LAYERS),
        "service_worker": "/report-sw.js",
        "map_page": "/map" if who.role in ("operator", "admin") else None,
        # Only what the list shows: the phone's link is slow and its data plan small.
        "mine_url": "/api/v1/incidents?limit=20&fields=code,category,status,reported_at",
        "text": script_text(),
        "media": media_limits,
    }
    html = config.render(
        "report.html",
        catalogue=catalogue,
        coord_sources=COORD_SOURCES,
        page_config=page_config,
        severity_colours=config.SEVERITY_COLOURS,
        tiles=tiles,
        csrf=who.csrf,
        links=PAGE_LINKS.get(who.role or "", ()),
        with_map=map_ == "on",
        media=media_limits,
        csp_nonce=nonce_of(request),
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
