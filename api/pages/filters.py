"""The case filters of the map and the dashboard, read from the URL so a view can be shared.

``status`` (``open`` by default on the map, ``all``, or statuses separated by commas),
``mechanism`` (codes, or ``none`` for single-side cases), ``side``, ``category``, ``window``
(``24h``, ``7d``, ``30d``, ``90d``, ``365d`` or ``all``) and, for an exact range, ``since`` and
``until`` (ISO 8601 with a zone).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import numpy as np

from api import params
from gis.catalogue import Catalogue
from gis.crs import parse_crs, to_wgs84
from gis.errors import InvalidInput
from gis.workflow import OPEN_STATUSES, STATUSES
from layers.mapdata import BBox, CaseFilter

WINDOWS: dict[str, timedelta | None] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "365d": timedelta(days=365),
    "all": None,
}
WINDOW_LABELS = {
    "24h": "last 24 hours",
    "7d": "last 7 days",
    "30d": "last 30 days",
    "90d": "last 90 days",
    "365d": "last year",
    "all": "any time",
}
OPEN = [s for s in STATUSES if s in OPEN_STATUSES]
FILTER_KEYS = ("status", "mechanism", "side", "category", "window", "since", "until")


@dataclass(frozen=True)
class Filters:
    """The filters as given in the URL (to fill the form) and as a query (to run)."""

    query: CaseFilter
    status: str
    statuses: tuple[str, ...]
    mechanisms: tuple[str, ...]
    sides: tuple[str, ...]
    categories: tuple[str, ...]
    window: str
    since: str | None
    until: str | None
    raw: dict[str, str] = field(default_factory=dict)  # the non-default URL parameters


def parse_filters(
    args: Mapping[str, str],
    catalogue: Catalogue,
    *,
    sides: set[str],
    now: datetime,
    default_status: str = "open",
) -> Filters:
    """Read and check the filters; unknown values raise ``InvalidInput`` listing valid ones."""
    status = (args.get("status") or default_status).strip()
    if status == "all":
        statuses: list[str] = []
    elif status == "open":
        statuses = list(OPEN)
    else:
        statuses = []
        for s in params.parse_csv(status, name="status", valid={*STATUSES, "open"}):
            statuses.extend(OPEN if s == "open" else [s])
        statuses = [s for s in STATUSES if s in set(statuses)]
    mechanisms = params.parse_csv(
        args.get("mechanism"), name="mechanism", valid={*catalogue.mechanisms, "none"}
    )
    side_list = params.parse_csv(args.get("side"), name="side", valid=sides or None)
    categories = params.parse_csv(
        args.get("category"), name="category", valid=set(catalogue.categories)
    )
    window = (args.get("window") or "all").strip()
    if window not in WINDOWS:
        raise InvalidInput(f"unknown window {window[:20]!r}", {"valid": list(WINDOWS)})
    since = params.parse_time(args.get("since"), name="since")
    until = params.parse_time(args.get("until"), name="until")
    span = WINDOWS[window]
    if since is None and span is not None:
        since = now - span
    raw = {k: args[k] for k in FILTER_KEYS if args.get(k)}
    if raw.get("status") == default_status:
        raw.pop("status")
    if raw.get("window") == "all":
        raw.pop("window")
    return Filters(
        query=CaseFilter(
            statuses=tuple(statuses),
            mechanisms=tuple(mechanisms),
            sides=tuple(side_list),
            categories=tuple(categories),
            since=since,
            until=until,
        ),
        status=status,
        statuses=tuple(statuses),
        mechanisms=tuple(mechanisms),
        sides=tuple(side_list),
        categories=tuple(categories),
        window=window,
        since=args.get("since") or None,
        until=args.get("until") or None,
        raw=raw,
    )


def parse_zoom(text: str | None) -> float:
    """A Web-Mercator zoom level, 0 to 22."""
    if text is None or text == "":
        return 10.0
    try:
        z = float(text)
    except ValueError:
        raise InvalidInput(
            "z must be a zoom level, a number from 0 to 22", {"z": text[:20]}
        ) from None
    if not 0 <= z <= 22:
        raise InvalidInput("z must be a zoom level, a number from 0 to 22", {"z": text[:20]})
    return z


def bbox_to_wgs84(bbox: BBox | None, crs: str) -> BBox | None:
    """A bbox given in the map's frame (GCJ-02 when the tiles are) as a WGS84 bbox covering it.

    GCJ-02 moves points by about 500 m here and by slightly different amounts at each corner,
    so the converted box is padded by 0.01 degree (about 1 km) to keep every feature in view.
    """
    if bbox is None or parse_crs(crs) in ("wgs84", "cgcs2000"):
        return bbox
    w, s, e, n = bbox
    xs, ys = to_wgs84(np.array([w, e, w, e]), np.array([s, s, n, n]), crs)
    pad = 0.01
    return (
        max(-180.0, float(min(xs)) - pad),
        max(-90.0, float(min(ys)) - pad),
        min(180.0, float(max(xs)) + pad),
        min(90.0, float(max(ys)) + pad),
    )


def as_query(raw: Mapping[str, Any]) -> str:
    """URL query text of the non-default filters."""
    return urlencode({k: v for k, v in raw.items() if v not in (None, "")})


def scoped(filters: Filters, who: Any) -> Filters:
    """Limit ``filters`` to the cases ``who`` (an ``api.access.Principal``) may see."""
    if getattr(who, "role", None) == "admin":
        return filters
    return replace(filters, query=replace(filters.query, scope_side=who.side))
