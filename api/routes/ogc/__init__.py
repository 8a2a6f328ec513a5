"""The OGC API - Features feed under ``/ogc``: Part 1 (Core, GeoJSON, HTML, OpenAPI 3.0),
Part 2 (CRS84 only), Part 3 (queryables, CQL2 filters)."""

from api.routes.ogc.routes import install, router

__all__ = ["install", "router"]
