"""``GET /api/v1/locate``: the facts for a point."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.access import CASE_ROLES, Principal, allow
from api.deps import database
from api.settings import patrol
from api.usecases.views import locate_view
from gis.crs import parse_crs, to_wgs84
from gis.location import check_lonlat, place
from layers import locate

router = APIRouter(prefix="/api/v1", tags=["routing"])


@router.get(
    "/locate", summary="Side, area chain, grids, distance to the border, and covering teams"
)
async def get_locate(
    request: Request,
    who: Annotated[Principal, allow(*CASE_ROLES)],
    lon: Annotated[str, Query(description="longitude, decimal degrees")],
    lat: Annotated[str, Query(description="latitude, decimal degrees")],
    crs: Annotated[str, Query(description="wgs84 (default), cgcs2000, gcj02 or bd09")] = "wgs84",
) -> Response:
    the_crs = parse_crs(crs)
    x, y = check_lonlat(lon, lat)
    wx, wy = to_wgs84(x, y, the_crs)
    # one thread hop for the connection, the facts and giving the connection back (api.deps.database);
    # the database and the catalogue straight from the app, not as dependencies to solve
    catalogue = request.app.state.catalogue
    # the teams' members' fixes as of now, as a report made now reads them
    f = await database(request).run(
        locate.facts,
        lon=wx,
        lat=wy,
        radius_m=catalogue.border_zone_m,
        as_of=datetime.now(UTC),
        fix_max_age_s=patrol().fresh_fix_s,
    )
    p = place(f, zone_m=catalogue.border_zone_m, tolerance_m=catalogue.service_area_tolerance_m)
    view = locate_view(f, p, input_={"lon": x, "lat": y, "crs": the_crs}, catalogue=catalogue)
    # each covering team with the member's fix that places it now (null: by its base)
    fixes = {t.code: t.fix for t in f.teams}
    for team in view["teams"]:
        fix = fixes.get(team["code"])
        team["fix"] = (
            None if fix is None else {**asdict(fix), "distance_m": round(fix.distance_m, 1)}
        )
    # orjson straight to bytes: FastAPI's generic encoding of this nested dict (team rosters
    # included) cost more than the look-up itself
    return Response(orjson.dumps(view), media_type="application/json")
