"""``/report``: the grid worker's report page, for a phone with a weak signal.

The page is rendered here with the whole category catalogue in it, so it needs no further
request to be filled in. Reports go to ``POST /api/v1/incidents``; each gets its
Idempotency-Key when it is made and waits in the phone's storage until the server accepts it
(see ``static/report.js``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from api.access import CASE_ROLES, Principal, allow
from api.deps import CatalogueDep, Conn
from api.pages import config
from api.security import nonce_of
from api.settings import MapSettings
from layers import mapdata

router = APIRouter(tags=["report"])

CRS_CHOICES = (
    ("wgs84", "WGS84 — GPS, the phone's own location 手机定位"),
    ("gcj02", "GCJ-02 — Amap 高德, Tencent 腾讯, WeChat 微信 maps"),
    ("bd09", "BD-09 — Baidu maps 百度地图"),
)


@router.get("/report", response_class=HTMLResponse, summary="The grid worker's report page")
def report_page(
    request: Request,
    conn: Conn,
    catalogue: CatalogueDep,
    who: Annotated[Principal, allow(*CASE_ROLES)],
) -> HTMLResponse:
    tiles = MapSettings()
    w, s, e, n = mapdata.extent(conn) or (105.07, 29.79, 106.02, 30.59)
    page_config = {
        "post_url": "/api/v1/incidents",
        "map_crs": tiles.tiles_crs,
        "tiles_url": tiles.tiles_url,
        "tiles_attribution": tiles.tiles_attribution,
        "bounds": [[s, w], [n, e]],
        "layers": [
            {
                "url": "/map/data/layers/districts",
                "style": {"color": "#222", "weight": 2, "fill": False},
            },
            {"url": "/map/data/layers/border_line", "style": {"color": "#e31a1c", "weight": 3}},
            {
                "url": "/map/data/layers/villages",
                "min_zoom": 12,
                "by_bbox": True,
                "style": {"color": "#888", "weight": 1, "fill": False, "dashArray": "2 3"},
            },
        ],
        "mechanisms": {code: f"{m.name} {m.name_en}" for code, m in catalogue.mechanisms.items()},
        "categories": {code: f"{c.name} {c.name_en}" for code, c in catalogue.categories.items()},
        "crs_names": {"wgs84": "WGS84", "gcj02": "GCJ-02", "bd09": "BD-09"},
    }
    html = (
        config.templates()
        .get_template("report.html")
        .render(
            catalogue=catalogue,
            crs_choices=CRS_CHOICES,
            page_config=page_config,
            severity_colours=config.SEVERITY_COLOURS,
            tiles=tiles,
            csrf=who.csrf,
            csp_nonce=nonce_of(request),
        )
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
