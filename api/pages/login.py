"""Signing in to the pages with an API key, kept in a session cookie (HttpOnly, SameSite=Strict).

The sign-in form is protected by a double-submit token; after sign-in, pages send the session's
CSRF token in the X-CSRF-Token header (see ``api.access``).
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api import errors
from api.access import SESSION_COOKIE, allow
from api.deps import database
from api.pages import config
from gis.errors import Unavailable
from layers import keys

router = APIRouter(tags=["pages"])
LOGIN_CSRF = "jg_login_csrf"


def _safe_next(target: str | None) -> str:
    """Only local paths: never redirect off the server after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\\\" in target:
        return "/map"
    return target


UNAVAILABLE = "数据库暂时无法访问，请稍后再试。The database is not reachable; please retry shortly."


def _form(
    next_: str,
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    html = (
        config.templates()
        .get_template("login.html")
        .render(next=_safe_next(next_), csrf=token, error=error)
    )
    resp = HTMLResponse(
        html, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})}
    )
    resp.set_cookie(LOGIN_CSRF, token, httponly=True, samesite="strict", path="/login")
    return resp


@router.get(
    "/login",
    response_class=HTMLResponse,
    dependencies=[allow(anyone=True)],
    summary="The sign-in page",
)
def login_page(next: str = "/map") -> HTMLResponse:
    return _form(next)


@router.post("/login", dependencies=[allow(anyone=True)], summary="Sign in with an API key")
async def login(
    request: Request,
    key: Annotated[str, Form(max_length=200)],
    csrf_token: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "/map",
) -> Response:
    # Compare bytes: compare_digest refuses non-ASCII str, and a form may carry anything.
    if not secrets.compare_digest(
        csrf_token.encode(), request.cookies.get(LOGIN_CSRF, "").encode()
    ):
        return _form(next, "The form expired; please try again.", 403)

    def check(conn: Any) -> tuple[str, str] | None:
        rec = keys.verify(conn, key.strip())
        return None if rec is None else keys.open_session(conn, rec["id"])

    try:
        opened = await database(request).run(check)
    except Unavailable:
        return _form(next, UNAVAILABLE, 503, {"Retry-After": errors.RETRY_AFTER_S})
    if opened is None:
        return _form(next, "That key is unknown or has been revoked.", 401)
    token, _ = opened
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
        max_age=12 * 3600,
    )
    resp.delete_cookie(LOGIN_CSRF, path="/login")
    return resp


@router.post("/logout", dependencies=[allow(anyone=True)], summary="Sign out of the pages")
async def logout(
    request: Request, csrf_token: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:

        def close(conn: Any) -> None:
            rec = keys.session(conn, cookie)
            if rec is not None and secrets.compare_digest(
                rec["csrf"].encode(), csrf_token.encode()
            ):
                keys.close_session(conn, cookie)

        await database(request).run(close)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp
