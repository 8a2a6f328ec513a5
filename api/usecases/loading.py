"""Use-cases shared by the CLI and HTTP: importing boundary files, seeding the demo, auditing."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from api import settings
from api.catalogue import load_catalogue
from gis.catalogue import Catalogue
from gis.coverage import DistrictLayer, GridLayer, PoliceLayer, VillageLayer, audit_coverage
from gis.crs import Crs, parse_crs
from gis.errors import ImportRejected, InvalidInput
from gis.importing import check_rows
from layers import border, importer, outbox, registry
from layers.audit import layers_for_audit
from layers.db import Conn, migrate


@dataclass
class LoadReport:
    layer: str
    path: str
    rows: int
    loaded: int
    counts: dict[str, int]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    repaired: list[dict[str, Any]] = field(default_factory=list)
    border: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def read_features(path: Path) -> tuple[list[dict[str, Any]], list[Any]]:
    """Read a GeoJSON, GeoPackage or Shapefile into property dicts and shapely geometries.

    The file's own CRS, when it declares one other than longitude/latitude, is refused: the
    caller must say which geographic CRS the coordinates are in (``--crs``).
    """
    import pyogrio

    if not path.exists():
        raise InvalidInput(f"no such file: {path}", {"path": str(path)})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gdf = pyogrio.read_dataframe(path)
    except Exception as exc:  # pyogrio raises several unrelated classes for unreadable files
        raise InvalidInput(
            f"cannot read {path.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            {"path": str(path), "hint": "give a GeoJSON, GeoPackage or Shapefile"},
        ) from exc
    if gdf.crs is not None and not gdf.crs.is_geographic:
        raise InvalidInput(
            f"{path.name} is in a projected CRS ({gdf.crs.to_string()}); "
            "reproject it to longitude/latitude (WGS84 or CGCS2000) first",
            {"crs": gdf.crs.to_string()},
        )
    props = gdf.drop(columns=gdf.geometry.name)
    records = [
        {k: (None if _isnull(v) else v) for k, v in rec.items()}
        for rec in props.to_dict(orient="records")
    ]
    return records, list(gdf.geometry.values)


def _isnull(v: Any) -> bool:
    if isinstance(v, list | dict | np.ndarray):
        return False
    try:
        return bool(v != v)  # NaN and NaT
    except (TypeError, ValueError):
        return False


def load_file(
    conn: Conn,
    path: Path,
    *,
    layer: str,
    crs: Crs | str = "wgs84",
    side: str | None = None,
    skip_invalid: bool = False,
    catalogue: Catalogue,
) -> LoadReport:
    """Check and upsert one file into ``layer``, in one transaction.

    With bad rows and not ``skip_invalid``, nothing is stored and ``ImportRejected`` lists them.
    """
    try:
        spec = registry.get(layer)
    except KeyError:
        spec = None
    if spec is None or spec.import_rules is None:
        importable = sorted(k for k, v in registry.REGISTRY.items() if v.importable)
        raise InvalidInput(f"cannot load into layer {layer!r}", {"importable": importable})
    the_crs = parse_crs(crs)
    records, geoms = read_features(path)
    rules = spec.import_rules
    with conn.transaction():
        known_sides = importer.known_codes(conn, table="areas", where="level = 'district'")
        if layer == "areas":
            parents = importer.known_codes(conn, table="areas")
        elif layer == "grids":
            parents = importer.known_codes(conn, table="areas", where="level = 'village'")
        else:
            parents = set()
        checked = check_rows(
            rules,
            records,
            geoms,
            crs=the_crs,
            side=side,
            known_parents=parents,
            known_sides=known_sides,
        )
        rejected = [p.as_dict() for p in checked.problems]
        if rejected and not skip_invalid:
            raise ImportRejected(
                f"{len(rejected)} of {len(records)} rows in {path.name} are bad; nothing was "
                "loaded. Fix them, or pass --skip-invalid to load the good rows",
                {"rejected": rejected, "rows": len(records)},
            )
        counts = importer.upsert(conn, spec, checked.rows)
        derived = None
        if (
            layer == "areas"
            and any(r.values.get("level") == "district" for r in checked.rows)
            and (counts.inserted or counts.updated)
        ):
            derived = border.derive(conn, width_m=catalogue.border_zone_m)
    return LoadReport(
        layer=layer,
        path=str(path),
        rows=len(records),
        loaded=len(checked.rows),
        counts=counts.as_dict(),
        rejected=rejected,
        repaired=checked.repairs,
        border=derived,
    )


# The demo, in load order: parents before children.
SEED_FILES: tuple[tuple[str, str], ...] = (
    ("districts.geojson", "areas"),
    ("towns.geojson", "areas"),
    ("villages.geojson", "areas"),
    ("grids.geojson", "grids"),
    ("police_grids.geojson", "police_grids"),
    ("teams.geojson", "teams"),
    ("chiefs.geojson", "chiefs"),
)


def seed(conn: Conn, folder: Path, *, catalogue: Catalogue) -> list[LoadReport]:
    """Load the boundary data folder (real districts and the synthetic demo); idempotent."""
    reports = []
    for name, layer in SEED_FILES:
        path = folder / name
        if path.exists():
            reports.append(load_file(conn, path, layer=layer, catalogue=catalogue))
    if not border.derived(conn):
        border.derive(conn, width_m=catalogue.border_zone_m)
    outbox.set_notify_rules(conn, catalogue.notifications)
    return reports


def seed_configured(conn: Conn) -> list[LoadReport]:
    """``seed`` with the configured folder and catalogue (``JOINTGRID_BOUNDARY_DIR``, ...)."""
    return seed(
        conn, settings.data().boundary_dir, catalogue=load_catalogue(settings.data().catalogue)
    )


def migrate_and_seed(
    conn: Conn, *, login: Callable[[Conn], None] | None = None, load: bool = True
) -> list[str]:
    """Set a database up: apply the migrations, make the server's login role (``login``),
    then load boundary_data/ (unless ``load`` is false) and commit; return the migrations
    applied. The one way the CLI (``jointgrid setup``), the tests and the bench do it."""
    conn.autocommit = True
    applied = migrate(conn)
    if login is not None:
        login(conn)
    conn.autocommit = False
    if load:
        seed_configured(conn)
        conn.commit()
    return applied


def audit(conn: Conn, *, min_area_m2: float = 1.0) -> Any:
    """The coverage audit of the stored layers (``gis.coverage``), areas in m² (EPSG:4544)."""

    data = layers_for_audit(conn)

    def base(name: str) -> dict[str, Any]:
        d = data[name]
        return {"codes": d.get("code", []), "geoms": d.get("geoms", []), "sides": d.get("side", [])}

    g = data["grids"]
    return audit_coverage(
        districts=DistrictLayer(**base("districts")),
        villages=VillageLayer(**base("villages")),
        grids=GridLayer(
            **base("grids"),
            village_codes=g.get("village_code", []),
            joint=np.array(g.get("joint", []), dtype=bool),
        ),
        police_grids=PoliceLayer(**base("police_grids")),
        min_area_m2=min_area_m2,
    )
