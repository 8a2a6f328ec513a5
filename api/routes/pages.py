"""The pages: ``/map`` (command centre), ``/dashboard`` with ``/api/v1/stats``, and ``/report``.

The routes live in the ``api.pages`` package; this module is the hook ``create_app`` calls.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api import i18n
from api.pages import cases, dashboard, login, mapview, report
from api.pages.compress import PageGZip
from api.pages.config import STATIC_DIR, page_settings
from api.routes import i18n as i18n_routes


def install(app: FastAPI) -> None:
    """Mount the static folders and register the page and map-data routes."""
    i18n.load()  # a broken message catalogue stops the server here, not on a first page
    app.add_middleware(PageGZip)
    app.mount(
        "/assets",
        StaticFiles(directory=page_settings().assets_dir, check_dir=False),
        name="assets",
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for pages in (mapview, dashboard, report, login, cases, i18n_routes):
        app.include_router(pages.router)
