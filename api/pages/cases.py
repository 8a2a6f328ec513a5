"""``/cases``, the operators' inbox, and ``/cases/{code}``, the case page where cases are worked.

Who sees what is the case API's own rule: the inbox lists through ``api.access.case_scope`` and
the same storage query as ``GET /api/v1/incidents`` (``layers.incidents.list_cases``), the case
page checks ``api.access.visible``, and an action is offered only when ``gis.workflow`` allows
it now and ``api.access.check_transition`` lets this key act for the side. Actions are sent by
``static/case.js`` to ``POST /cases/{code}/actions`` with the session's CSRF token, and go
through the same transition use-case as ``POST /api/v1/incidents/{id}/transitions``.

The pages carry no inline script or handler: their scripts are files under ``/static`` that read
``data-`` attributes, so they run under a strict Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import time as clock
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError

from api import i18n, params
from api.access import Principal, allow, case_scope, check_transition, may_see_reporter, visible
from api.deps import CatalogueDep, Conn
from api.errors import body as error_body
from api.errors import status_for
from api.i18n import trace as trace_text
from api.pages import config
from api.settings import MapSettings
from api.usecases import cases, media
from api.usecases.policy import Forbidden
from api.usecases.schemas import TransitionIn
from gis import workflow
from gis.catalogue import Catalogue
from gis.crs import from_wgs84
from gis.errors import DomainError, InvalidInput, NotFound
from layers import incidents, mapdata, teams

router = APIRouter(tags=["cases"])

# Operators, team members and admins work cases, signed in as for /map.
Worker = Annotated[Principal, allow("operator", "team_member", "admin")]

VIEWS: dict[str, tuple[str, ...]] = {
    "reported": ("reported",),
    "working": ("accepted", "dispatched", "in_progress"),
    "verifying": ("resolved",),
    "closing": ("verified",),
    "done": ("closed", "rejected", "duplicate"),
}
"""The inbox's views (tabs) and the statuses each gathers, in workflow order."""
PAGE_SIZE = 50
PAGE_MAX = 200
REFRESH_S = 15
NO_STORE = {"Cache-Control": "no-store"}
LANG_COOKIE = "jg_lang"
CURSOR_TAG = "due"  # the inbox's cursor is ("due", due time, id): the API's will not fit


def locale_of(request: Request) -> str:
    """The page language: ``?lang=`` or the cookie it set; Chinese otherwise."""
    return i18n.pick_locale(
        None, request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    )


def _page(request: Request, html: str, status: int = 200) -> HTMLResponse:
    resp = HTMLResponse(html, status_code=status, headers=NO_STORE)
    lang = request.query_params.get("lang")
    if lang:
        resp.set_cookie(LANG_COOKIE, i18n.pick_locale(None, lang), samesite="strict", path="/")
    return resp


# -- the inbox -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxQuery:
    """The inbox's view, filters and page, as parsed from the URL."""

    view: str
    overdue: bool
    mechanism: list[str]
    side: list[str]
    category: list[str]
    severity: list[str]
    team: str | None
    cross: bool | None
    since: date | None
    until: date | None
    text: str | None
    cursor: tuple[str, str] | None
    limit: int = PAGE_SIZE

    def filters(self, who: Principal, now: datetime, *, view: bool = True) -> dict[str, Any]:
        """The storage filters of this view (what the key may see is the separate scope,
        ``api.access.case_scope``, given to the same storage query)."""
        return {
            "status": list(VIEWS[self.view]) if view and self.view in VIEWS else None,
            "mechanism": self.mechanism,
            "involved_side": self.side,
            "category": self.category,
            "severity": self.severity,
            "assigned_team": self.team,
            "cross_boundary": self.cross,
            "since": _day_start(self.since),
            "until": _day_start(self.until + timedelta(days=1)) if self.until else None,
            "text": self.text,
            "overdue_at": now if self.overdue else None,
        }

    def query(self, **changes: Any) -> str:
        """The URL query of this view with ``changes`` (``None`` drops a parameter)."""
        args: dict[str, Any] = {
            "view": self.view,
            "overdue": "1" if self.overdue else None,
            "mechanism": ",".join(self.mechanism) or None,
            "side": ",".join(self.side) or None,
            "category": ",".join(self.category) or None,
            "severity": ",".join(self.severity) or None,
            "team": self.team,
            "cross": None if self.cross is None else ("yes" if self.cross else "no"),
            "from": self.since.isoformat() if self.since else None,
            "to": self.until.isoformat() if self.until else None,
            "q": self.text,
            "limit": None if self.limit == PAGE_SIZE else str(self.limit),
        }
        args.update(changes)
        return urlencode({k: v for k, v in args.items() if v not in (None, "")})


def _day_start(day: date | None) -> datetime | None:
    """Midnight of a day in Beijing time."""
    return None if day is None else datetime.combine(day, time(0), tzinfo=i18n.TZ)


def _date(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{name} is a date: YYYY-MM-DD", {name: text[:30]}) from None


def parse_inbox(args: dict[str, str], catalogue: Catalogue, who: Principal) -> InboxQuery:
    """The inbox query from URL parameters; ``InvalidInput`` names a wrong one."""
    view = args.get("view") or ("working" if who.role == "team_member" else "reported")
    if view not in (*VIEWS, "all"):
        raise InvalidInput(
            "view must be one of the inbox's views", {"view": view[:30], "valid": [*VIEWS, "all"]}
        )
    cross_text = args.get("cross") or ""
    if cross_text not in ("", "yes", "no"):
        raise InvalidInput("cross is yes or no", {"cross": cross_text[:10]})
    cursor = params.decode_cursor(args.get("cursor"), size=3)
    if cursor is not None and cursor[0] != CURSOR_TAG:
        raise InvalidInput("this cursor is not the inbox's; follow its next link", {})
    text = (args.get("q") or "").strip()[:200] or None
    return InboxQuery(
        view=view,
        overdue=args.get("overdue") in ("1", "true", "yes"),
        mechanism=params.parse_csv(
            args.get("mechanism"), name="mechanism", valid=set(catalogue.mechanisms)
        ),
        side=params.parse_csv(args.get("side"), name="side"),
        category=params.parse_csv(
            args.get("category"), name="category", valid=set(catalogue.categories)
        ),
        severity=params.parse_csv(
            args.get("severity"), name="severity", valid=set(catalogue.severities)
        ),
        team=(args.get("team") or "").strip()[:40] or None,
        cross=None if not cross_text else cross_text == "yes",
        since=_date(args.get("from"), "from"),
        until=_date(args.get("to"), "to"),
        text=text,
        cursor=None if cursor is None else (cursor[1], cursor[2]),
        limit=_bounded(args.get("limit"), "limit", PAGE_SIZE, 1, PAGE_MAX),
    )


def _bounded(text: str | None, name: str, default: float, low: float, high: float) -> int:
    """A whole number parameter within ``low`` and ``high``, or ``default`` when not given."""
    if not text:
        return int(default)
    try:
        value = int(text)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number", {name: text[:20]}) from None
    if not low <= value <= high:
        raise InvalidInput(
            f"{name} must be between {low:g} and {high:g}", {name: value, "maximum": high}
        )
    return value


COUNT_CAP = 999
"""Views count up to this many cases, then show "999+": exact counts of a province's million
cases on every refresh would cost more than the page itself (see docs/performance.md)."""


def inbox_counts(conn: Conn, q: InboxQuery, who: Principal, now: datetime) -> dict[str, str]:
    """Cases per view under the other filters, and the overdue ones among all views, capped."""
    groups = {**{v: list(s) for v, s in VIEWS.items()}, "all": list(workflow.STATUSES)}
    got = incidents.count_capped(
        conn,
        filters=q.filters(who, now, view=False),
        groups=groups,
        now=now,
        cap=COUNT_CAP,
        scope=case_scope(who),
    )
    return {k: f"{COUNT_CAP}+" if n > COUNT_CAP else str(n) for k, n in got.items()}


def _lead_team(row: dict[str, Any]) -> dict[str, Any] | None:
    team_list = row.get("teams") or []
    return next((x for x in team_list if x.get("lead")), team_list[0] if team_list else None)


def _row(row: dict[str, Any], now: datetime, loc: str, map_ok: bool) -> dict[str, Any]:
    state = cases.state_of(row)
    lon, lat = (row["location"] or {}).get("coordinates", (None, None))
    return {
        "id": row["id"],
        "code": row["code"],
        "category": i18n.name("category", row["category"], loc),
        "severity": row["severity"],
        "severity_name": i18n.t(f"severity.{row['severity']}.short", loc),
        "severity_colour": config.SEVERITY_COLOURS.get(row["severity"], "#999"),
        "status": row["status"],
        "status_name": i18n.name("status", row["status"], loc),
        "due_at": row["due_at"].isoformat() if row["due_at"] else "",
        "time_left": i18n.time_left(row["due_at"], now, loc),
        "overdue": workflow.is_overdue(state, now),
        "mechanism": i18n.name("mechanism", row["mechanism"], loc),
        "mechanism_code": row["mechanism"],
        "lead_side": i18n.side_name(row["lead_side"], loc, "label"),
        "lead_team": _lead_team(row),
        "cross": row["cross_boundary"],
        "signoff": [
            {"name": i18n.side_name(s, loc, "short"), "signed": s in row["verified_sides"]}
            for s in row["sides"]
        ]
        if row["status"] in ("resolved", "verified")
        else [],
        "reported_at": row["reported_at"].isoformat(),
        "reported": i18n.when(row["reported_at"], "short", loc),
        "map": f"/map#16/{lat:.6f}/{lon:.6f}" if map_ok and lon is not None else None,
    }


def _inbox_context(
    request: Request, conn: Conn, catalogue: Catalogue, who: Principal
) -> dict[str, Any]:
    now = datetime.now(UTC)
    loc = locale_of(request)
    q = parse_inbox(dict(request.query_params), catalogue, who)
    rows = incidents.list_cases(
        conn,
        filters=q.filters(who, now),
        bbox=None,
        limit=q.limit + 1,
        after=q.cursor,
        order="due",
        scope=case_scope(who),
    )
    page, more = rows[: q.limit], len(rows) > q.limit
    next_query = None
    if more:
        last = page[-1]
        due = last["due_at"].isoformat() if last["due_at"] else "infinity"
        next_query = q.query(cursor=params.encode_cursor(CURSOR_TAG, due, last["id"]))
    map_ok = who.role in ("operator", "admin")  # the map's own access rule
    return {
        "q": q,
        "loc": loc,
        "now": now,
        "views": list(VIEWS),
        # filled by the script from /cases/counts, so the rows never wait for the counts
        "counts": {},
        "counts_src": "/cases/counts?" + q.query(),
        "rows": [_row(r, now, loc, map_ok) for r in page],
        "next_query": next_query,
        "first_page": q.cursor is None,
        "first_query": q.query(),
        "who": who,
    }


@router.get("/cases", response_class=HTMLResponse, summary="The operators' inbox")
def inbox(request: Request, conn: Conn, catalogue: CatalogueDep, who: Worker) -> HTMLResponse:
    ctx = _inbox_context(request, conn, catalogue, who)
    html = config.render(
        "cases.html",
        **ctx,
        catalogue=catalogue,
        # The side and team pickers carry only the chosen option; static/cases.js fills in the
        # rest from /cases/choices, which the browser keeps (see docs/performance.md: the 510
        # teams and 145 sides were most of every page's bytes and of its rendering time).
        picked=_picked(request, conn, who, ctx["q"], ctx["loc"]),
        choices_src="/cases/choices?" + urlencode({"lang": ctx["loc"]}),
        # ``refresh=`` seconds in the URL (2 to 3600), as on /map
        refresh_s=_bounded(request.query_params.get("refresh"), "refresh", REFRESH_S, 2, 3600),
        live_src="/cases/live?" + request.url.query,
    )
    return _page(request, html)


@router.get(
    "/cases/live",
    response_class=HTMLResponse,
    summary="The inbox's counts and rows, for its refresh without a reload",
)
def inbox_live(request: Request, conn: Conn, catalogue: CatalogueDep, who: Worker) -> HTMLResponse:
    ctx = _inbox_context(request, conn, catalogue, who)
    return HTMLResponse(config.render("cases_live.html", **ctx), headers=NO_STORE)


@router.get(
    "/cases/counts",
    summary="The inbox's live counts: cases per view and overdue, under the same filters",
)
def inbox_count(request: Request, conn: Conn, catalogue: CatalogueDep, who: Worker) -> JSONResponse:
    q = parse_inbox(dict(request.query_params), catalogue, who)
    now = datetime.now(UTC)
    return JSONResponse(
        {"counts": inbox_counts(conn, q, who, now), "cap": COUNT_CAP, "at": now.isoformat()},
        headers=NO_STORE,
    )


CHOICES_MAX_AGE_S = 300
"""How long a browser keeps the pickers without asking again (then revalidates by ETag)."""


@router.get(
    "/cases/choices",
    summary="The inbox's side and team pickers: [code, label] pairs in the page's language",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}, 304: {"description": "unchanged"}},
)
def inbox_choices(request: Request, conn: Conn, who: Worker) -> Response:
    loc = locale_of(request)
    scope = f"{who.role}:{who.side}:{who.team if who.role == 'team_member' else ''}"
    body, etag = _looked_up(
        request, f"choices:{loc}:{scope}", lambda: _choices_body(request, conn, who, loc)
    )
    headers = {
        "ETag": etag,
        # private: each key has its own scope of teams; Vary, as a session may change hands
        "Cache-Control": f"private, max-age={CHOICES_MAX_AGE_S}",
        "Vary": "Cookie, Authorization",
    }
    if etag in (request.headers.get("if-none-match") or "").replace("W/", "").split(", "):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def _choices_body(request: Request, conn: Conn, who: Principal, loc: str) -> tuple[bytes, str]:
    body = orjson.dumps(
        {
            "side": [[c, i18n.side_name(c, loc, "label")] for c in _sides_of(request, conn)],
            "team": [[x["code"], _team_label(x, loc)] for x in _team_choices(request, conn, who)],
        }
    )
    return body, '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _team_label(team: dict[str, Any], loc: str) -> str:
    return f"{team['name']} · {i18n.side_name(team['side'], loc, 'short')}"


def _picked(
    request: Request, conn: Conn, who: Principal, q: InboxQuery, loc: str
) -> dict[str, tuple[str, str] | None]:
    """The chosen side and team as (code, label), so the form keeps them before the script has
    filled the pickers (and without it)."""
    side = (q.side[0], i18n.side_name(q.side[0], loc, "label")) if len(q.side) == 1 else None
    team = None
    if q.team:
        found = next((x for x in _team_choices(request, conn, who) if x["code"] == q.team), None)
        team = (q.team, _team_label(found, loc) if found else q.team)
    return {"side": side, "team": team}


# Sides and teams change only with an import: the pickers read them at most once a minute.
LOOKUP_S = 60.0


def _looked_up(request: Request, name: str, load: Any) -> Any:
    cache = request.app.state.__dict__.setdefault("inbox_lookups", {})
    hit = cache.get(name)
    if hit is None or hit[0] < clock.monotonic():
        hit = cache[name] = (clock.monotonic() + LOOKUP_S, load())
    return hit[1]


def _sides_of(request: Request, conn: Conn) -> list[str]:
    return _looked_up(request, "sides", lambda: list(mapdata.district_names(conn)))


def _team_choices(request: Request, conn: Conn, who: Principal) -> list[dict[str, Any]]:
    """The teams to filter by: an admin's every team, an operator's those of its side or serving
    it, a team member's own."""
    side = None if who.role == "admin" else who.side
    found = _looked_up(request, f"teams:{side}", lambda: teams.names(conn, side=side))
    if who.role == "team_member":
        return [x for x in found if x["code"] == who.team]
    return found


# -- the case page -------------------------------------------------------------------------------


def _case(conn: Conn, who: Principal, code: str) -> dict[str, Any]:
    """The case if this key may see it; the same 404 as the API otherwise."""
    try:
        return visible(who, incidents.get(conn, code))
    except NotFound:
        raise NotFound("no such case, or not visible to this key", {"id": code}) from None


def acting_sides(who: Principal, row: dict[str, Any]) -> list[str]:
    """The sides this key may act for on this case: its own, or any involved side for an admin."""
    out = []
    for side in row["sides"] if who.role == "admin" else [who.side]:
        if side is None or side not in row["sides"]:
            continue
        try:
            check_transition(who, row, side)
        except Forbidden:
            continue
        out.append(side)
    return out


def actions_for(who: Principal, row: dict[str, Any], catalogue: Catalogue) -> dict[str, list[str]]:
    """Each action the workflow allows this key now, with the sides it may take it for."""
    state = cases.state_of(row)
    ladder = workflow.ladder_of(catalogue.escalation)
    out: dict[str, list[str]] = {}
    for side in acting_sides(who, row):
        for action in workflow.allowed_actions(state, ladder=ladder, side=side):
            out.setdefault(action, []).append(side)
    return {a: out[a] for a in workflow.ACTIONS if a in out}


def _other(conn: Conn, who: Principal, case_id: str | None) -> dict[str, Any] | None:
    """Another case (a possible duplicate, a merge target) if this key may see it."""
    if not case_id:
        return None
    try:
        row = _case(conn, who, case_id)
    except NotFound:
        return None
    return {"id": row["id"], "code": row["code"], "status": row["status"]}


def _event(ev: dict[str, Any], loc: str) -> dict[str, Any]:
    actor = ev.get("actor") or {}
    payload = ev.get("payload") or {}
    who = i18n.name("role", actor.get("role") or actor.get("kind"), loc)
    if actor.get("team"):
        who += f" · {actor['team']}"
    action = "escalate.automatic" if payload.get("automatic") else ev["action"]
    extra = []
    if payload.get("due_at") and ev["action"] in ("postpone", "escalate", "dispatch"):
        extra.append(
            i18n.t("case.due", loc) + " " + i18n.when(payload["due_at"]["to"], "long", loc)
        )
    if payload.get("escalation"):
        extra.append(i18n.name("ladder", payload["escalation"]["to"], loc))
    return {
        "seq": ev["seq"],
        "action": ev["action"],
        "action_name": i18n.name("action", action, loc),
        "who": who,
        "side": i18n.side_name(ev["actor_side"], loc, "short") if ev.get("actor_side") else "",
        "at": i18n.when(ev["at"], "long", loc),
        "at_iso": ev["at"].isoformat(),
        "to": i18n.name("status", ev["to_status"], loc),
        "note": ev.get("note") or "",
        "extra": "；".join(extra),
    }


def by_side(row: dict[str, Any], loc: str) -> list[dict[str, Any]]:
    """Teams and contacts grouped by side, lead side first."""
    order = [row["lead_side"], *[s for s in row["sides"] if s != row["lead_side"]]]
    for x in [*(row["teams"] or []), *(row["contacts"] or [])]:
        if x.get("side") and x["side"] not in order:
            order.append(x["side"])
    return [
        {
            "code": side,
            "name": i18n.side_name(side, loc),
            "lead": side == row["lead_side"],
            "signed": side in row["verified_sides"],
            "teams": [x for x in row["teams"] or [] if x.get("side") == side],
            "contacts": [c for c in row["contacts"] or [] if c.get("side") == side],
        }
        for side in order
    ]


def _rung(catalogue: Catalogue, level: int, loc: str) -> str:
    rungs = catalogue.escalation
    return i18n.name("ladder", rungs[min(level, len(rungs) - 1)].level, loc) if rungs else "—"


def _map_config(row: dict[str, Any], sides: list[str]) -> dict[str, Any]:
    tiles = MapSettings()
    lon, lat = row["location"]["coordinates"]
    x, y = from_wgs84(lon, lat, tiles.tiles_crs)
    return {
        "center": [y, x],
        "zoom": 15,
        "data": f"/cases/{row['code']}/map",
        "tiles_url": tiles.tiles_url,
        "tiles_attribution": tiles.tiles_attribution,
        "grid": row.get("grid_code"),
        "police_grid": row.get("police_grid_code"),
        "colour": config.mechanism_colour(row["mechanism"]),
        "side_colours": config.side_colours(sides),
    }


def case_context(
    conn: Conn, who: Principal, row: dict[str, Any], catalogue: Catalogue, loc: str
) -> dict[str, Any]:
    """Everything the case page shows."""
    now = datetime.now(UTC)
    view = cases.case_view(row, show_reporter=may_see_reporter(who, row))
    routing = row.get("routing") or {}
    actions = actions_for(who, row, catalogue)
    pending = [s for s in row["sides"] if s not in row["verified_sides"]]
    state = cases.state_of(row)
    return {
        "case": view,
        "row": row,
        "loc": loc,
        "now": now,
        "who": who,
        "csrf": who.csrf or "",
        "trace": trace_text.render(routing.get("trace", []), row, loc),
        "chain": routing.get("chain", []),
        "by_side": by_side(row, loc),
        "events": [_event(e, loc) for e in incidents.events(conn, row["id"])],
        "actions": actions,
        "note_required": workflow.NOTE_REQUIRED,
        "pending_sides": pending if row["status"] == "resolved" else [],
        "pending_names": i18n.join((i18n.side_name(s, loc, "short") for s in pending), loc),
        "involved_names": i18n.join((i18n.side_name(s, loc, "short") for s in row["sides"]), loc),
        "reason_names": i18n.join((i18n.name("reason", r, loc) for r in row["reasons"]), loc),
        "ladder_name": _rung(catalogue, row["escalation_level"], loc),
        "overdue": workflow.is_overdue(state, now),
        "duplicate": _other(conn, who, row.get("possible_duplicate_of")),
        "merged_into": _other(conn, who, row.get("merged_into")),
        "postpone_min": i18n.iso_local(max(now, row["due_at"]) if row["due_at"] else now),
        "map_config": orjson.dumps(_map_config(row, list(mapdata.district_names(conn)))).decode(),
        "map_ok": who.role in ("operator", "admin"),
        "severity_colour": config.SEVERITY_COLOURS.get(row["severity"], "#999"),
        "mechanism_colour": config.mechanism_colour(row["mechanism"]),
        "catalogue": catalogue,
    }


@router.get("/cases/{code}", response_class=HTMLResponse, summary="The case page: work one case")
def case_page(
    code: str, request: Request, conn: Conn, catalogue: CatalogueDep, who: Worker
) -> HTMLResponse:
    row = _case(conn, who, code)
    html = config.render(
        "case.html",
        **case_context(conn, who, row, catalogue, locale_of(request)),
        # The photos, before and after (templates/case_evidence.html includes the gallery).
        **media.gallery_context(conn, row, admin=who.role == "admin"),
    )
    return _page(request, html)


@router.get(
    "/cases/{code}/map",
    summary="The case page's map: the grids, police grids, districts and border around the case",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
def case_map(code: str, conn: Conn, who: Worker) -> Response:
    row = _case(conn, who, code)
    lon, lat = row["location"]["coordinates"]
    box = (lon - 0.03, lat - 0.02, lon + 0.03, lat + 0.02)
    crs = MapSettings().tiles_crs
    parts = {
        "grids": mapdata.view_geojson(conn, mapdata.view("grids"), bbox=box, zoom=15, out_crs=crs),
        "police_grids": mapdata.view_geojson(
            conn, mapdata.view("police_grids"), bbox=box, zoom=15, out_crs=crs
        ),
        "districts": mapdata.view_geojson(
            conn, mapdata.view("districts"), bbox=None, zoom=11, out_crs=crs
        ),
        "border_line": mapdata.view_geojson(
            conn, mapdata.view("border_line"), bbox=None, zoom=13, out_crs=crs
        ),
    }
    # Each part is GeoJSON text built by the database; they are joined, never parsed here.
    text = "{" + ",".join(f'"{k}":{v}' for k, v in parts.items()) + "}"
    return Response(text, media_type="application/json", headers={"Cache-Control": "max-age=60"})


def _parse_due(text: str | None) -> datetime | None:
    """A ``datetime-local`` value, read as Beijing time; ISO text with a zone is kept as is."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            "due_at is a date and time, e.g. 2026-12-03T18:00", {"due_at": text[:40]}
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=i18n.TZ)


def refusal(exc: DomainError, loc: str) -> JSONResponse:
    """A refused action: the API's error body, its message written for the page's reader."""
    return JSONResponse(
        error_body(exc.code, i18n.error_text(exc.code, exc.detail, loc), exc.detail),
        status_code=status_for(exc),
        headers={**NO_STORE, "Content-Language": loc.replace("_", "-")},
    )


@router.post(
    "/cases/{code}/actions",
    summary="Take an action on a case from its page (the form of one data-action button)",
    responses={
        403: {"description": "this key may not act for that side"},
        409: {"description": "the workflow does not allow this action now"},
    },
)
def case_action(
    code: str,
    request: Request,
    conn: Conn,
    catalogue: CatalogueDep,
    who: Worker,
    action: Annotated[str, Form(max_length=40)],
    side: Annotated[str, Form(max_length=20)] = "",
    note: Annotated[str, Form(max_length=4000)] = "",
    due_at: Annotated[str, Form(max_length=40)] = "",
    into: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    loc = locale_of(request)
    try:
        row = _case(conn, who, code)
        acting = side or (who.side or "")
        try:
            body = TransitionIn(
                action=action,
                side=acting,
                note=note or None,
                due_at=_parse_due(due_at),
                into=into.strip() or None,
            )
        except ValidationError:
            raise InvalidInput(
                f"unknown action {action[:40]!r}", {"valid": list(workflow.ACTIONS)}
            ) from None
        check_transition(who, row, body.side)
        case = cases.transition(conn, row["id"], body, catalogue, actor=who.actor())
    except DomainError as exc:
        return refusal(exc, loc)
    return JSONResponse(
        {
            "code": case["code"],
            "status": case["status"],
            "status_name": i18n.name("status", case["status"], loc),
            "verified_sides": case["verified_sides"],
            "url": f"/cases/{case['code']}",
        },
        headers=NO_STORE,
    )
