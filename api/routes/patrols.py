"""The patrol faces for people: a team's popup on the map (``/map/team/{code}``) and the
coverage shares behind the dashboard (``GET /api/v1/patrols/coverage``)."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from api import i18n
from api.access import Principal, allow
from api.deps import Conn
from api.pages.cases import locale_of
from api.settings import patrol
from gis.errors import NotFound
from gis.fixes import parse_time
from layers import patrols, positions, teams

router = APIRouter(tags=["patrols"])
SHANGHAI = ZoneInfo("Asia/Shanghai")
CommandCentre = Annotated[Principal, allow("operator", "admin")]


def _age_min(t: datetime | None, now: datetime) -> str | None:
    return None if t is None else str(max(0, round((now - t).total_seconds() / 60)))


@router.get(
    "/map/team/{code}",
    response_class=HTMLResponse,
    include_in_schema=False,
)
def team_popup(code: str, request: Request, conn: Conn, who: CommandCentre) -> HTMLResponse:
    """A team's popup: members on duty (a fresh fix), the last fix and its age, today's
    distance, and the team's open cases."""
    loc = locale_of(request)
    now = datetime.now(UTC)
    team = next((t for t in positions.latest_by_team(conn) if t["team"] == code), None)
    row = next((t for t in teams.names(conn) if t["code"] == code), None)
    if row is None:
        raise NotFound("no such team", {"team": code[:40]})
    day = now.astimezone(SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0)
    facts = patrols.team_today(conn, team=code, day_start=day)
    fresh = timedelta(seconds=patrol().fresh_fix_s)
    on = [m for m in facts["members"] if m["last_fix"] and now - m["last_fix"] <= fresh]
    off = [m for m in facts["members"] if m not in on]
    e = html.escape

    def who_list(ms: list[dict[str, Any]]) -> str:
        if not ms:
            return e(i18n.t("patrol.none", loc))
        return "、".join(
            e(m["name"])
            + (
                f"（{e(i18n.t('patrol.age_min', loc, minutes=_age_min(m['last_fix'], now)))}）"
                if m["last_fix"]
                else ""
            )
            for m in ms
        )

    last = (
        e(
            team["time"].astimezone(SHANGHAI).strftime("%m-%d %H:%M")
            + " · "
            + i18n.t("patrol.age_min", loc, minutes=_age_min(team["time"], now))
        )
        if team
        else e(i18n.t("patrol.never", loc))
    )
    rows = [
        (i18n.t("patrol.last_fix", loc), last),
        (
            i18n.t("patrol.distance_today", loc),
            e(i18n.t("patrol.km", loc, km=f"{facts['distance_m'] / 1000:.1f}")),
        ),
        (i18n.t("patrol.open_cases", loc), str(facts["open_cases"])),
        (i18n.t("patrol.members_on_duty", loc), who_list(on)),
        (i18n.t("patrol.members_off", loc), who_list(off)),
    ]
    body = "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    title = e(i18n.t("patrol.popup_title", loc, team=row["name"]))
    return HTMLResponse(
        f'<div class="jg-popup jg-team" data-team="{e(code)}"><h3>{title}</h3>'
        f"<table>{body}</table></div>",
        headers={"Cache-Control": "no-store"},
    )


@router.get(
    "/api/v1/patrols/coverage",
    summary="Each side's share of the border zone patrolled, per team, and by day",
)
def coverage_shares(
    conn: Conn,
    who: CommandCentre,
    since: Annotated[
        str | None, Query(description="ISO 8601; default: Monday of this week")
    ] = None,
    until: Annotated[str | None, Query(description="ISO 8601; default: now")] = None,
) -> JSONResponse:
    now = datetime.now(UTC)
    t0 = parse_time(since, now=now) if since else patrols.week_start(now.astimezone(SHANGHAI))
    t1 = parse_time(until, now=now) if until else now
    doc = patrols.shares(conn, since=t0, until=t1, gap_s=patrol().session_gap_s)
    return JSONResponse({"since": t0.isoformat(), "until": t1.isoformat(), **doc})
