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
from api.access import SESSION_COOKIE, allow, app_cache
from api.deps import database
from api.pages import config
from api.security import nonce_of
from layers import keys
from layers.errors import Unavailable

router = APIRouter(tags=["pages"])
LOGIN_CSRF = "jg_login_csrf"


def _safe_next(target: str | None) -> str:
    """Only local paths: never redirect off the server after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\\\" in target:
        return "/map"
    return target


# The form's errors: keys of the message catalogue (the page shows Chinese, then English).
UNAVAILABLE = "login.unavailable"


def _form(
    request: Request,
    next_: str,
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    html = config.render(
        "login.html", next=_safe_next(next_), csrf=token, error=error, csp_nonce=nonce_of(request)
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
def login_page(request: Request, next: str = "/map") -> HTMLResponse:
    return _form(request, next)


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
        return _form(request, next, "login.expired", 403)

    def check(conn: Any) -> tuple[str, str] | None:
        rec = keys.verify(conn, key.strip())
        return None if rec is None else keys.open_session(conn, rec["id"])

    try:
        opened = await database(request).run(check)
    except Unavailable:
        return _form(request, next, UNAVAILABLE, 503, {"Retry-After": errors.RETRY_AFTER_S})
    if opened is None:
        return _form(request, next, "login.unknown_key", 401)
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
    """End the session on the server, then clear its cookie: both or neither.

    A live session signs out only with its own CSRF token (the sign-out button carries it);
    without it nothing changes, so a cookie is never dropped while its session stays valid.
    """
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:

        def close(conn: Any) -> bool:
            """False when a live session's CSRF token is missing or wrong."""
            rec = keys.session(conn, cookie)
            if rec is None:
                return True  # expired or already ended: only the cookie is left
            if not secrets.compare_digest(rec["csrf"].encode(), csrf_token.encode()):
                return False
            keys.close_session(conn, cookie)  # other server processes hear of it too
            return True

        if not await database(request).run(close):
            return HTMLResponse(
                config.render("signed_out.html", ok=False, csp_nonce=nonce_of(request)),
                status_code=403,
                headers={"Cache-Control": "no-store"},
            )
        app_cache(request.app).clear()  # this process at once, before the notice comes back
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp
