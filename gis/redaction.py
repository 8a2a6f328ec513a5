"""The one rule for what a public surface shows of a case.

Public surfaces are the OGC ``incidents`` collection, Open311 GeoReport v2 reads, and anything
else served to feed keys or to anonymous callers. Each serves the same view to every caller,
whatever its key: the case API (``/api/v1/incidents``) is where a key's own scope shows more.

The rule, defined here once and applied by the OGC SQL (``layers.features``, from
``PUBLIC_FIELDS``, ``WITHHELD_IF_SENSITIVE`` and ``CELL_DEG``) and by the Python views
(``public_case``, used by Open311):

1. Only ``PUBLIC_FIELDS`` are published. Everything else is private, in particular the
   description (free text that often names people), the reporter, the contacts, the teams and
   the routing trace (which name people and units), the raw input, and the links to other
   cases (``merged_into``, ``possible_duplicate_of``: an id says that a case exists).
2. A case in a sensitive category (``Catalogue.sensitive_categories``: drugs, neighbour
   disputes, …) keeps no exact trace: its ``WITHHELD_IF_SENSITIVE`` fields are null, and it is
   placed at its grid's centroid, or at the centre of its ``CELL_DEG`` cell when it has no grid
   (``published_point``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# The stored columns that any public surface may show.
PUBLIC_FIELDS: tuple[str, ...] = (
    "id",
    "code",
    "status",
    "category",
    "severity",
    "side",
    "sides",
    "cross_boundary",
    "reasons",
    "mechanism",
    "lead_side",
    "distance_to_border_m",
    "grid_code",
    "police_grid_code",
    "occurred_at",
    "reported_at",
    "updated_at",
    "due_at",
    "escalation_level",
)
# Public links beside the fields: the stripped screen copies of a case's photos, through their
# unguessable capability URLs, never for a sensitive category (layers.features.media_links).
PUBLIC_LINKS: tuple[str, ...] = ("media",)
# Named so that a layer spec can list them; anything not public is private all the same.
PRIVATE_FIELDS: tuple[str, ...] = (
    "description",
    "reporter",
    "contacts",
    "teams",
    "routing",
    "input",
    "verified_sides",
    "merged_into",
    "possible_duplicate_of",
)
# Public fields that a sensitive case publishes as null (they would locate it).
WITHHELD_IF_SENSITIVE: tuple[str, ...] = ("distance_to_border_m",)
CELL_DEG = 0.01  # the cell of a sensitive case without a grid, in degrees (WGS84)

if set(WITHHELD_IF_SENSITIVE) - set(PUBLIC_FIELDS) or set(PUBLIC_FIELDS) & set(PRIVATE_FIELDS):
    raise AssertionError("the redaction rule contradicts itself")


def published_point(
    lon: float, lat: float, grid_centroid: tuple[float, float] | None
) -> tuple[float, float]:
    """Where a sensitive case is published (WGS84 degrees): its grid's centroid, else the
    centre of its ``CELL_DEG`` cell."""
    if grid_centroid is not None:
        return grid_centroid
    half = CELL_DEG / 2
    return (
        math.floor(lon / CELL_DEG) * CELL_DEG + half,
        math.floor(lat / CELL_DEG) * CELL_DEG + half,
    )


def public_case(
    row: Mapping[str, Any],
    *,
    sensitive: bool,
    lonlat: tuple[float, float] | None,
    grid_centroid: tuple[float, float] | None = None,
) -> tuple[dict[str, Any], tuple[float, float] | None]:
    """The public view of a stored case: (its ``PUBLIC_FIELDS``, its published point).

    ``sensitive`` says whether the case's category is sensitive; ``lonlat`` is its exact point
    (WGS84), ``grid_centroid`` that of its grid if known.
    """
    view = {name: row[name] for name in PUBLIC_FIELDS}
    point = lonlat
    if sensitive:
        for name in WITHHELD_IF_SENSITIVE:
            view[name] = None
        if lonlat is not None:
            point = published_point(lonlat[0], lonlat[1], grid_centroid)
    return view, point
