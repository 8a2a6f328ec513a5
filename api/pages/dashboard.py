"""``/dashboard`` and ``GET /api/v1/stats``: case figures by mechanism, side and status.

The figures come from one SQL round trip (``layers/sql/map_stats.sql``). Every table the
dashboard shows is also CSV: ``/api/v1/stats?format=csv&table=<name>`` with the same filters.
Charts are SVG drawn here; the hot-spot map is SVG path data from PostGIS (``ST_AsSVG``).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import Markup

from api import i18n
from api.access import Principal, allow
from api.deps import CatalogueDep, Conn, ReadConn
from api.pages import charts, config
from api.pages.filters import WINDOWS, Filters, as_query, parse_filters, scoped
from api.settings import patrol
from gis.catalogue import Catalogue
from gis.errors import InvalidInput
from gis.workflow import STATUSES
from layers import mapdata, patrols

router = APIRouter(tags=["stats"])

# The tables of the stats document, each exportable as CSV.
TABLES: dict[str, str] = {
    "totals": "open, closed, overdue, escalated and cross-boundary cases",
    "by_mechanism": "open and closed cases per mechanism ('none' = single-side)",
    "by_side": "open and closed cases per lead side",
    "photos": "cases with and without photos per lead side",
    "by_status": "cases per status",
    "breakdown": "cases per mechanism, lead side and status",
    "compliance": "time-limit compliance per mechanism",
    "overdue": "open cases past their due time (up to 500, most overdue first)",
    "cross_boundary": "cross-boundary cases per reason",
    "grids": "cases per grid (hot spots)",
    "weekly": "cases reported, resolved and closed per week (China Standard Time)",
}
# The columns of each table, so that a CSV of no rows still has its header row (a test checks
# them against the keys the stats query returns).
COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "totals": (
        "cases",
        "open",
        "closed",
        "overdue",
        "escalated",
        "cross_boundary",
        "cross_boundary_share",
    ),
    "by_mechanism": ("mechanism", "open", "closed", "overdue", "cross_boundary", "total"),
    "by_side": ("side", "open", "closed", "overdue", "cross_boundary", "total"),
    "by_status": ("status", "open", "total"),
    "breakdown": ("mechanism", "side", "status", "open", "total"),
    "compliance": ("mechanism", "on_time", "late", "overdue_open", "pending", "compliance"),
    "overdue": (
        "id",
        "code",
        "category",
        "severity",
        "status",
        "mechanism",
        "side",
        "due_at",
        "hours_overdue",
        "escalation_level",
    ),
    "cross_boundary": ("reason", "cases"),
    "grids": ("grid_code", "name", "side", "total", "open", "overdue"),
    "weekly": ("week", "reported", "cross_boundary", "resolved", "resolved_on_time", "closed"),
    "photos": ("side", "with_photos", "without_photos"),
}
CHOROPLETH = ("#fff7bc", "#fec44f", "#fe9929", "#d95f0e", "#993404")
# A rate over fewer cases than this is marked as indicative only.
FEW_CASES: Final = 10
# Rows of the long tables: the normal page, and the wall screen (every panel in 1920 x 1080).
TOP_ROWS: Final[dict[bool, tuple[int, int]]] = {False: (15, 25), True: (8, 6)}
# Pages other than the dashboard that its roles may open.
PAGE_LINKS: Final = (("/cases", "nav.cases"), ("/map", "nav.map"))


def _stats(
    request: Request, conn: Conn, catalogue: Catalogue, who: Principal
) -> tuple[dict[str, Any], Filters, dict[str, str], datetime]:
    now = datetime.now(UTC)
    sides = mapdata.district_names(conn)
    filters = scoped(
        parse_filters(
            dict(request.query_params),
            catalogue,
            sides=set(sides),
            now=now,
            default_status="all",
        ),
        who,
    )
    doc = mapdata.stats(conn, filters=filters.query, now=now)
    doc = {
        "generated_at": now.isoformat(),
        "filters": filters.raw,
        "sides": sides,
        **doc,
        "tables": TABLES,
    }
    return doc, filters, sides, now


def _csv(doc: dict[str, Any], table: str | None) -> Response:
    if table not in TABLES:
        raise InvalidInput(
            "format=csv needs table=<name>, one of the tables of the stats",
            {"valid": list(TABLES), "table": table},
        )
    value = doc.get(table)
    rows: list[dict[str, Any]] = [value] if isinstance(value, dict) else list(value or [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS[table], extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _cell(v) for k, v in r.items()})
    # The file is named by the date in China, where its readers are.
    stamp = datetime.fromisoformat(doc["generated_at"]).astimezone(i18n.TZ).date().isoformat()
    return Response(
        # A byte-order mark so that spreadsheet programs read the Chinese names as UTF-8.
        "\ufeff" + buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="jointgrid-{table}-{stamp}.csv"'},
    )


def _cell(v: Any) -> Any:
    if isinstance(v, list):
        return ";".join(str(x) for x in v)
    return v


@router.get(
    "/api/v1/stats",
    summary="Case figures: by mechanism, side and status; compliance; overdue; hot spots; trend",
    responses={200: {"content": {"text/csv": {}}}},
)
def get_stats(
    request: Request,
    conn: ReadConn,
    catalogue: CatalogueDep,
    who: Annotated[Principal, allow("operator", "admin")],
    format: Annotated[str, Query(description="json (default) or csv")] = "json",
    table: Annotated[str | None, Query(description="with format=csv: which table")] = None,
) -> Response:
    doc, _, _, _ = _stats(request, conn, catalogue, who)
    if format == "csv":
        return _csv(doc, table)
    if format != "json":
        raise InvalidInput("format must be json or csv", {"format": format[:20]})
    return JSONResponse(doc)


@router.get("/dashboard", response_class=HTMLResponse, summary="The dashboard")
def dashboard(
    request: Request,
    conn: ReadConn,
    catalogue: CatalogueDep,
    who: Annotated[Principal, allow("operator", "admin")],
    format: Annotated[str, Query(description="html (default) or csv")] = "html",
    table: Annotated[str | None, Query(description="with format=csv: which table")] = None,
    layout: Annotated[str, Query(description="normal (default) or wall: 1920 x 1080")] = "normal",
) -> Response:
    if layout not in ("normal", "wall"):
        raise InvalidInput("layout must be normal or wall", {"layout": layout[:20]})
    doc, filters, sides, now = _stats(request, conn, catalogue, who)
    if format == "csv":
        return _csv(doc, table)
    choropleth = mapdata.grid_choropleth(conn, filters=filters.query)
    week = patrols.week_start(now.astimezone(ZoneInfo("Asia/Shanghai")))
    patrol_doc = patrols.shares(conn, since=week, until=now, gap_s=patrol().session_gap_s)
    html = config.render(
        "dashboard.html",
        doc=doc,
        filters=filters,
        catalogue=catalogue,
        sides=sides,
        statuses=STATUSES,
        windows=[(k, i18n.t(f"window.{k}")) for k in WINDOWS],
        query=as_query({**filters.raw, **({"layout": "wall"} if layout == "wall" else {})}),
        map_query=as_query({k: v for k, v in filters.raw.items() if k != "status"}),
        charts=_charts(doc, catalogue, sides),
        choropleth=_choropleth(choropleth),
        mech_name=lambda code: _mech_name(catalogue, code),
        cat_name=lambda code: _cat_name(catalogue, code),
        csrf=who.csrf,
        colour=config.mechanism_colour,
        tables=TABLES,
        now=now,
        wall=layout == "wall",
        patrol=patrol_doc,
        top_grids=TOP_ROWS[layout == "wall"][0],
        top_overdue=TOP_ROWS[layout == "wall"][1],
        few=FEW_CASES,
        refresh_s=config.page_settings().dashboard_refresh_s,
        links=[(href, i18n.t(key)) for href, key in PAGE_LINKS],
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def _mech_name(catalogue: Catalogue, code: str | None) -> str:
    return i18n.name("mechanism", code if code in catalogue.mechanisms else "none")


def _cat_name(catalogue: Catalogue, code: str) -> str:
    return i18n.name("category", code)


def _charts(doc: dict[str, Any], catalogue: Catalogue, sides: dict[str, str]) -> dict[str, Markup]:
    open_closed = [
        charts.Series("open", i18n.t("dash.series.open"), "#e6550d"),
        charts.Series("closed", i18n.t("dash.series.closed"), "#9ecae1"),
    ]
    by_mech = [(_mech_name(catalogue, r["mechanism"]), r) for r in doc.get("by_mechanism", [])]
    by_side = [(i18n.side_name(r["side"], form="short"), r) for r in doc.get("by_side", [])]
    by_status = [
        (i18n.name("status", r["status"]), {"open" if r["open"] else "closed": r["total"]})
        for r in doc.get("by_status", [])
    ]
    compliance = [
        (
            _mech_name(catalogue, r["mechanism"]),
            float(r["compliance"]) if r["compliance"] is not None else None,
            config.mechanism_colour(r["mechanism"]),
        )
        for r in doc.get("compliance", [])
    ]
    weekly = doc.get("weekly") or []
    weeks = [str(w["week"])[5:] for w in weekly]
    trend = [
        (
            charts.Series("reported", i18n.t("dash.series.reported"), "#3182bd"),
            [w["reported"] for w in weekly],
        ),
        (
            charts.Series("cross_boundary", i18n.t("dash.series.cross"), "#e31a1c"),
            [w["cross_boundary"] for w in weekly],
        ),
        (
            charts.Series("resolved", i18n.t("dash.series.resolved"), "#31a354"),
            [w["resolved"] for w in weekly],
        ),
        (
            charts.Series("closed", i18n.t("dash.series.closed_week"), "#756bb1"),
            [w["closed"] for w in weekly],
        ),
    ]
    return {
        "by_mechanism": charts.stacked_bars(
            by_mech, open_closed, title=i18n.t("dash.by_mechanism")
        ),
        "by_side": charts.stacked_bars(by_side, open_closed, title=i18n.t("dash.by_side")),
        "by_status": charts.stacked_bars(by_status, open_closed, title=i18n.t("dash.col.status")),
        "compliance": charts.percent_bars(compliance, title=i18n.t("dash.compliance")),
        "weekly": charts.lines(weeks, trend, title=i18n.t("dash.weekly")),
    }


def _choropleth(data: dict[str, Any]) -> dict[str, Any]:
    """Class breaks (quantiles of the grids that have cases) and a fill per grid."""
    counts = sorted(int(g["n"]) for g in data["grids"] if g["n"])
    breaks: list[int] = []
    if counts:
        for k in range(1, len(CHOROPLETH)):
            b = counts[min(len(counts) - 1, int(len(counts) * k / len(CHOROPLETH)))]
            if not breaks or b > breaks[-1]:
                breaks.append(b)

    def fill(n: int) -> str:
        if n <= 0:
            return "#f4f4f4"
        for i, b in enumerate(breaks):
            if n < b:
                return CHOROPLETH[i]
        return CHOROPLETH[min(len(breaks), len(CHOROPLETH) - 1)]

    legend = []
    lower = 1
    for i, b in enumerate(breaks):
        if b - 1 >= lower:
            legend.append((CHOROPLETH[i], f"{lower}–{b - 1}"))
        lower = b
    if counts:
        legend.append((CHOROPLETH[min(len(breaks), len(CHOROPLETH) - 1)], f"≥ {lower}"))
    grids = [{**g, "fill": fill(int(g["n"]))} for g in data["grids"]]
    return {
        "grids": grids,
        "outlines": data["outlines"],
        "viewbox": data["viewbox"],
        "legend": legend,
        "max": counts[-1] if counts else 0,
    }
