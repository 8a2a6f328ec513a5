"""``/dashboard`` and ``GET /api/v1/stats``: case figures by mechanism, side and status.

The figures come from one SQL round trip (``layers/sql/map_stats.sql``). Every table the
dashboard shows is also CSV: ``/api/v1/stats?format=csv&table=<name>`` with the same filters.
Charts are SVG drawn here; the hot-spot map is SVG path data from PostGIS (``ST_AsSVG``).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markupsafe import Markup

from api.access import Principal, allow
from api.deps import CatalogueDep, Conn
from api.pages import charts, config
from api.pages.filters import WINDOW_LABELS, WINDOWS, Filters, as_query, parse_filters, scoped
from gis.catalogue import Catalogue
from gis.errors import InvalidInput
from gis.workflow import STATUSES
from layers import mapdata

router = APIRouter(tags=["stats"])

# The tables of the stats document, each exportable as CSV.
TABLES: dict[str, str] = {
    "totals": "open, closed, overdue, escalated and cross-boundary cases",
    "by_mechanism": "open and closed cases per mechanism ('none' = single-side)",
    "by_side": "open and closed cases per lead side",
    "by_status": "cases per status",
    "breakdown": "cases per mechanism, lead side and status",
    "compliance": "time-limit compliance per mechanism",
    "overdue": "open cases past their due time (up to 500, most overdue first)",
    "cross_boundary": "cross-boundary cases per reason",
    "grids": "cases per grid (hot spots)",
    "weekly": "cases reported, resolved and closed per week (China Standard Time)",
}
CHOROPLETH = ("#fff7bc", "#fec44f", "#fe9929", "#d95f0e", "#993404")


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
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    writer = csv.DictWriter(buf, fieldnames=columns or ["empty"], extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _cell(v) for k, v in r.items()})
    stamp = doc["generated_at"][:10]
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
    conn: Conn,
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
    conn: Conn,
    catalogue: CatalogueDep,
    who: Annotated[Principal, allow("operator", "admin")],
    format: Annotated[str, Query(description="html (default) or csv")] = "html",
    table: Annotated[str | None, Query(description="with format=csv: which table")] = None,
) -> Response:
    doc, filters, sides, now = _stats(request, conn, catalogue, who)
    if format == "csv":
        return _csv(doc, table)
    choropleth = mapdata.grid_choropleth(conn, filters=filters.query)
    html = (
        config.templates()
        .get_template("dashboard.html")
        .render(
            doc=doc,
            filters=filters,
            catalogue=catalogue,
            sides=sides,
            statuses=STATUSES,
            windows=[(k, WINDOW_LABELS[k]) for k in WINDOWS],
            query=as_query(filters.raw),
            map_query=as_query({k: v for k, v in filters.raw.items() if k != "status"}),
            charts=_charts(doc, catalogue, sides),
            choropleth=_choropleth(choropleth),
            mech_name=lambda code: _mech_name(catalogue, code),
            cat_name=lambda code: _cat_name(catalogue, code),
            csrf=who.csrf,
            colour=config.mechanism_colour,
            tables=TABLES,
            now=now,
        )
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def _mech_name(catalogue: Catalogue, code: str | None) -> str:
    m = catalogue.mechanisms.get(code or "")
    return f"{m.name} {m.name_en}" if m else "单方 single-side"


def _cat_name(catalogue: Catalogue, code: str) -> str:
    c = catalogue.categories.get(code)
    return f"{c.name} {c.name_en}" if c else code


def _charts(doc: dict[str, Any], catalogue: Catalogue, sides: dict[str, str]) -> dict[str, Markup]:
    open_closed = [
        charts.Series("open", "open 未办结", "#e6550d"),
        charts.Series("closed", "closed 已办结", "#9ecae1"),
    ]
    by_mech = [(_mech_name(catalogue, r["mechanism"]), r) for r in doc.get("by_mechanism", [])]
    by_side = [
        (f"{sides.get(r['side'], r['side'])} {r['side']}", r) for r in doc.get("by_side", [])
    ]
    by_status = [
        (r["status"], {"open" if r["open"] else "closed": r["total"]})
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
        (charts.Series("reported", "reported 上报", "#3182bd"), [w["reported"] for w in weekly]),
        (
            charts.Series("cross_boundary", "cross-boundary 跨界", "#e31a1c"),
            [w["cross_boundary"] for w in weekly],
        ),
        (charts.Series("resolved", "resolved 办结", "#31a354"), [w["resolved"] for w in weekly]),
        (charts.Series("closed", "closed 结案", "#756bb1"), [w["closed"] for w in weekly]),
    ]
    return {
        "by_mechanism": charts.stacked_bars(by_mech, open_closed, title="cases per mechanism"),
        "by_side": charts.stacked_bars(by_side, open_closed, title="cases per lead side"),
        "by_status": charts.stacked_bars(by_status, open_closed, title="cases per status"),
        "compliance": charts.percent_bars(compliance, title="on time, per mechanism"),
        "weekly": charts.lines(weeks, trend, title="cases per week"),
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
