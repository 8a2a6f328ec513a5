"""Reading the layers the coverage audit needs, already projected to EPSG:4544 (metres)."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

from layers.db import Conn, translate_errors

METRIC_SRID = 4544  # CGCS2000 / 3-degree Gauss-Kruger CM 105E: covers the Anju-Tongnan border


def _read(conn: Conn, query: str) -> dict[str, Any]:
    with translate_errors():
        rows = conn.execute(query, {"srid": METRIC_SRID}, binary=True).fetchall()
    out: dict[str, Any] = {k: [r[k] for r in rows] for k in (rows[0] if rows else {})}
    if "wkb" in out:
        out["geoms"] = shapely.from_wkb(np.array(out.pop("wkb"), dtype=object))
    return out


def layers_for_audit(conn: Conn) -> dict[str, dict[str, Any]]:
    """Districts, villages, grids and police grids as parallel arrays in EPSG:4544."""
    return {
        "districts": _read(
            conn,
            "SELECT code, side, ST_AsBinary(ST_Transform(geom, %(srid)s)) AS wkb"
            " FROM areas WHERE level = 'district' ORDER BY code",
        ),
        "villages": _read(
            conn,
            "SELECT code, side, ST_AsBinary(ST_Transform(geom, %(srid)s)) AS wkb"
            " FROM areas WHERE level = 'village' ORDER BY code",
        ),
        "grids": _read(
            conn,
            "SELECT code, side, village_code, joint,"
            " ST_AsBinary(ST_Transform(geom, %(srid)s)) AS wkb FROM grids ORDER BY code",
        ),
        "police_grids": _read(
            conn,
            "SELECT code, side, ST_AsBinary(ST_Transform(geom, %(srid)s)) AS wkb"
            " FROM police_grids ORDER BY code",
        ),
    }
