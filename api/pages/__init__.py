"""The pages: the command-centre map, the dashboard and the grid worker's report page.

Everything they load is served by this server: our own scripts and styles under ``/static``,
and the browser libraries (Leaflet and the rest) under ``/assets``, installed from the npm
registry by ``scripts/assets.sh`` at pinned versions. ``api.routes.pages.install`` mounts them.
"""
