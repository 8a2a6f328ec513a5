"""What the pages share: settings, templates, asset URLs and the map's colours.

Asset URLs point at this server only. ``/assets/<package>/...`` is ``var/assets/node_modules``
(filled by ``scripts/assets.sh`` from the npm registry at the versions pinned in
``scripts/assets/package-lock.json``); ``/static/...`` is ``api/static``, our own files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from api import i18n
from api.settings import ROOT

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "templates"
CHINA = timezone(timedelta(hours=8), "CST")  # China Standard Time: no daylight saving


class PageSettings(BaseSettings):
    """Where the browser libraries are, and how often the map refreshes its incidents."""

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_", extra="ignore")

    assets_dir: Path = ROOT / "var" / "assets" / "node_modules"
    map_refresh_s: float = Field(default=10.0, ge=1.0, le=3600.0)
    dashboard_refresh_s: float = Field(default=60.0, ge=5.0, le=3600.0)


@cache
def page_settings() -> PageSettings:
    return PageSettings()


def asset(path: str) -> str:
    """URL of a file of an npm package, e.g. ``asset("leaflet/dist/leaflet.js")``."""
    return f"/assets/{path}"


@cache
def static(name: str) -> str:
    """URL of one of our own static files, with a content hash so browsers refetch changes."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:10]
    return f"/static/{name}?v={digest}"


# Every library folium 0.20's page template and the plugins we use would fetch from a CDN,
# by the name folium gives it, mapped to the copy this server serves.
FOLIUM_JS: dict[str, str] = {
    "leaflet": asset("leaflet/dist/leaflet.js"),
    "jquery": asset("jquery/dist/jquery.min.js"),
    "bootstrap": asset("bootstrap/dist/js/bootstrap.bundle.min.js"),
    "awesome_markers": asset("leaflet.awesome-markers/dist/leaflet.awesome-markers.js"),
    "Leaflet_Realtime_js": asset("leaflet-realtime/dist/leaflet-realtime.js"),
    "markerclusterjs": asset("leaflet.markercluster/dist/leaflet.markercluster.js"),
    "leaflet-heat.js": asset("leaflet.heat/dist/leaflet-heat.js"),
}
FOLIUM_CSS: dict[str, str] = {
    "leaflet_css": asset("leaflet/dist/leaflet.css"),
    "bootstrap_css": asset("bootstrap/dist/css/bootstrap.min.css"),
    "glyphicons_css": asset("glyphicons-only-bootstrap/css/bootstrap.min.css"),
    "awesome_markers_font_css": asset("@fortawesome/fontawesome-free/css/all.min.css"),
    "awesome_markers_css": asset("leaflet.awesome-markers/dist/leaflet.awesome-markers.css"),
    "markerclustercss": asset("leaflet.markercluster/dist/MarkerCluster.css"),
    "markerclusterdefaultcss": asset("leaflet.markercluster/dist/MarkerCluster.Default.css"),
}
# folium's `awesome_rotate_css` (rotated awesome-marker icons) has no package on a registry;
# the map never rotates an icon, so it is left out rather than fetched from folium's repository.
DROPPED_CSS = frozenset({"awesome_rotate_css"})

# Colour = mechanism. Chosen to stay apart from the layer outlines (grey, blue, red border).
MECHANISM_COLOURS: dict[str, str] = {
    "joint_defense": "#1f5fbf",
    "joint_mediation": "#2ca02c",
    "joint_governance": "#8e44ad",
    "joint_response": "#ff7f0e",
    "joint_management": "#8c564b",
    "joint_building": "#17a2b8",
    "none": "#6c757d",
}
FALLBACK_COLOUR = "#343a40"

# Shape = where a case is in the closed loop.
STATUS_SHAPES: dict[str, str] = {
    "reported": "circle",
    "accepted": "circle",
    "dispatched": "square",
    "in_progress": "square",
    "resolved": "diamond",
    "verified": "diamond",
    "closed": "ring",
    "rejected": "ring",
    "duplicate": "ring",
}
SHAPE_LABELS: dict[str, str] = {
    "circle": "new: reported, accepted 新报/受理",
    "square": "being handled: dispatched, in progress 派遣/处置",
    "diamond": "done, awaiting sign-off: resolved, verified 办结/核查",
    "ring": "finished: closed, rejected, duplicate 结案/退回/合并",
}

# Colour = side, for district outlines and labels: by side code in order, so a new neighbour
# gets the next colour (500152 潼南区 orange, 510904 安居区 blue).
SIDE_PALETTE: tuple[str, ...] = ("#d9822b", "#2c6fbb", "#2e9e6a", "#8e5bb5", "#b5475b")


def side_colours(codes: Iterable[str]) -> dict[str, str]:
    """Side code -> colour of its district on the maps."""
    return {c: SIDE_PALETTE[i % len(SIDE_PALETTE)] for i, c in enumerate(sorted(codes))}


SEVERITY_COLOURS: dict[str, str] = {
    "red": "#d7191c",
    "orange": "#fd8d3c",
    "yellow": "#e6c700",
    "blue": "#2c7bb6",
}


def mechanism_colour(code: str | None) -> str:
    return MECHANISM_COLOURS.get(code or "none", FALLBACK_COLOUR)


def templates() -> Jinja2Templates:
    """The page templates, with filters for times and numbers."""
    return _templates()


def render(name: str, **context: Any) -> str:
    """The page template ``name`` filled with ``context``."""
    return templates().get_template(name).render(**context)


@cache
def _templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(TEMPLATE_DIR))
    t.env.filters["cst"] = cst
    t.env.filters["pct"] = pct
    t.env.filters["num"] = num
    t.env.globals["static"] = static
    t.env.globals["asset"] = asset
    i18n.install(t.env)
    t.env.globals["signout_form"] = lambda csrf: signout_form(t, csrf)
    return t


def signout_form(t: Jinja2Templates, csrf: str | None) -> Markup:
    """The sign-out button (``_signout.html``) for a page signed in with a session whose CSRF
    token is ``csrf`` (``Principal.csrf``); nothing for a Bearer key. In a template:
    ``{{ signout_form(csrf) }}``."""
    return Markup(t.get_template("_signout.html").render(csrf=csrf))


def cst(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A time (datetime or ISO text) in China Standard Time."""
    if value is None or value == "":
        return "—"
    t = datetime.fromisoformat(value) if isinstance(value, str) else value
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return str(t.astimezone(CHINA).strftime(fmt))


def pct(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{float(value) * 100:.{digits}f}%"


def num(value: Any) -> str:
    if value is None:
        return "—"
    return f"{int(value):,}"
