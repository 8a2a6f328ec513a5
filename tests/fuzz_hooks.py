"""Schemathesis checks for JointGrid's contract, loaded by tests/test_fuzz.py (SCHEMATHESIS_HOOKS).

Besides schemathesis's own ``not_a_server_error`` and ``max_response_time``: every 4xx has its
face's error body: ``{"code", "message", "detail"}`` on the JSON API, the OGC exception
``{"code", "description"}`` under ``/ogc``, and the GeoReport list ``[{"code", "description"}]``
under ``/open311``. The pages for people (``/login``, ``/map``, ...) may answer an HTML page.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis

PAGE_PREFIXES = ("/login", "/logout", "/map", "/report", "/dashboard", "/cases")


def _media(response: Any) -> str:
    value = response.headers.get("content-type") or ""
    return (value[0] if isinstance(value, list) and value else str(value)).lower()


@schemathesis.check
def error_body_of_the_face(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx answers in its face's error shape (see api/errors.py, the one table of faces)."""
    status = response.status_code
    if not 400 <= status < 500:
        return None
    path = case.path
    if _media(response).startswith("text/html") and path.startswith(PAGE_PREFIXES):
        return None  # a page for people, e.g. the sign-in form shown again with its reason
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"{status} body is not JSON: {response.content[:200]!r}") from exc
    if path == "/ogc" or path.startswith("/ogc/"):
        ok = isinstance(body, dict) and isinstance(body.get("code"), str) and "description" in body
    elif path.startswith("/open311"):
        ok = (
            isinstance(body, list)
            and len(body) >= 1
            and isinstance(body[0], dict)
            and body[0].get("code") == status
            and isinstance(body[0].get("description"), str)
        )
    else:
        ok = (
            isinstance(body, dict)
            and {"code", "message", "detail"} <= set(body)
            and isinstance(body["code"], str)
            and isinstance(body["message"], str)
        )
    if not ok:
        raise AssertionError(f"{status} body is not in the face's error shape: {body!r:.300}")
    return None
