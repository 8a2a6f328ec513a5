"""The feed's HTML views (``f=html``): Jinja templates under ``api/templates/ogc/``, with the
pages' one template environment (``api.pages.config``, autoescaped)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

from api.pages import config
from api.routes.ogc.common import default

NAV_RELS = ("self", "alternate", "next", "prev", "collection", "data", "items")


def page(template: str, title: str, links: list[dict[str, str]], **context: Any) -> Response:
    """An HTML view: ``ogc/<template>.html`` with the page's title and its navigation links."""
    nav = [ln for ln in links if ln["rel"] in NAV_RELS or ln["rel"].startswith("service")]
    text = config.render(f"ogc/{template}.html", title=title, nav=nav, **context)
    return Response(
        text, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )


def cell(v: Any) -> str:
    """A value as a table shows it: text as it is, anything else as JSON."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return orjson.dumps(v, default=default).decode()


def table(
    title: str,
    links: list[dict[str, str]],
    rows: list[dict[str, Any]],
    columns: list[str],
    *,
    hrefs: list[str] | None = None,
    summary: str | None = None,
) -> Response:
    """A table of ``rows`` (dicts) by ``columns``; ``hrefs`` links each row's first cell."""
    body = [
        {"cells": [cell(r.get(c)) for c in columns], "href": hrefs[i] if hrefs else None}
        for i, r in enumerate(rows)
    ]
    return page("table", title, links, columns=columns, rows=body, summary=summary)


def api_page(doc: dict[str, Any], links: list[dict[str, str]]) -> Response:
    """The API definition as a plain page (service-doc): operations and their parameters."""
    by_name = doc["components"]["parameters"]
    operations = []
    for path, ops in doc["paths"].items():
        op = ops["get"]
        names = []
        for p in op.get("parameters", []):
            if "$ref" in p:
                p = by_name[p["$ref"].rsplit("/", 1)[1]]
            names.append(p["name"])
        operations.append({"path": path, "summary": op["summary"], "parameters": names})
    return page(
        "api",
        "JointGrid feeds: the API",
        links,
        description=doc["info"]["description"],
        server=doc["servers"][0]["url"],
        operations=operations,
    )
