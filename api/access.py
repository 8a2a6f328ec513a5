"""Who may do what: API keys (Bearer), page sessions (cookie + CSRF), and one rule per route.

Every route declares its rule next to it, as a parameter ``who: Annotated[Principal, allow(...)]``
(or ``dependencies=[allow(...)]``). The test suite walks every route and fails if one has none.

Roles:
- ``grid_worker``: reports, reads its own reports;
- ``team_member``: reads and moves the cases assigned to its team, for its side;
- ``operator``: reads its side's cases and every cross-boundary case involving its side, and
  moves them only for its own side;
- ``admin``: everything, including reporter identity;
- ``feed``: the redacted feeds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from fastapi import Depends, Request

from api.deps import database
from api.errors import Unauthenticated
from api.usecases.policy import (
    REFERENCE_FIELDS,
    Forbidden,
    Principal,
    can_see,
    case_scope,
    check_transition,
    find_visible,
    hide_unseen_event_refs,
    hide_unseen_refs,
    may_see_reporter,
    visible,
)
from layers import keys
from layers.errors import Unavailable

# The rules on cases live with the use-cases (api.usecases.policy); the faces find them here.
__all__ = [
    "ALL_ROLES",
    "CACHE_SECONDS",
    "CASE_ROLES",
    "REFERENCE_FIELDS",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "Principal",
    "Rule",
    "allow",
    "app_cache",
    "authenticate",
    "can_see",
    "case_scope",
    "check_transition",
    "find_visible",
    "hide_unseen_event_refs",
    "hide_unseen_refs",
    "may_see_reporter",
    "start_revocation_listener",
    "visible",
]

SESSION_COOKIE = "jg_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CACHE_SECONDS = 10.0  # how long a key look-up is reused (emptied at once on any revocation)
ALL_ROLES = keys.ROLES
CASE_ROLES = ("grid_worker", "team_member", "operator", "admin")


@dataclass(frozen=True)
class Rule:
    roles: tuple[str, ...]
    public_feed: bool = False  # open to anonymous callers when JOINTGRID_PUBLIC_FEEDS=true
    anyone: bool = False  # open to everybody (health, sign-in page)


@dataclass
class _Cache:
    """Keys and sessions looked up in the last ``CACHE_SECONDS``.

    Each server process listens for revocations (``layers.keys.listen``): a key revoked or a
    session closed anywhere empties the cache at once. While the listener is away (its
    connection lost), entries still expire after ``CACHE_SECONDS``, so a database outage does
    not turn every request into a wait for the database, and the cache is emptied as soon as
    the listener is back, since it may have missed a notice. (A revocation needs the database,
    so one made during a whole outage cannot be missed.)
    """

    entries: dict[str, tuple[float, dict[str, Any] | None]] = field(default_factory=dict)
    listening: bool = False
    generation: int = 0  # bumped whenever the cache is emptied
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, token: str) -> tuple[bool, dict[str, Any] | None]:
        hit = self.entries.get(token)
        if hit is None or hit[0] < time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, token: str, value: dict[str, Any] | None, *, since: int) -> None:
        """Cache a look-up that started at generation ``since``, unless the cache was emptied
        after it started (the look-up may have read a key just before its revocation)."""
        with self.lock:
            if since != self.generation:
                return
            if len(self.entries) > 10_000:
                self.entries.clear()
            self.entries[token] = (time.monotonic() + CACHE_SECONDS, value)

    def clear(self) -> None:
        with self.lock:
            self.generation += 1
            self.entries.clear()

    def set_listening(self, on: bool) -> None:
        with self.lock:
            if on:  # notices may have been missed while away
                self.generation += 1
                self.entries.clear()
            self.listening = on


def _cache(request: Request) -> _Cache:
    return app_cache(request.app)


def app_cache(app: Any) -> _Cache:
    cache = getattr(app.state, "key_cache", None)
    if cache is None:
        cache = app.state.key_cache = _Cache()
    return cache


def _conninfo(app: Any) -> str:
    """The pool's connection string now (the pool may hold a callable that re-reads it, so a
    database that came back on another port is found again)."""
    info = app.state.pool.conninfo
    return str(info() if callable(info) else info)


def start_revocation_listener(app: Any) -> Callable[[], None]:
    """Listen for revoked keys and closed sessions on a thread of this process; return a
    function that stops it. Each server process (worker) runs its own."""
    cache = app_cache(app)
    stop = threading.Event()
    if getattr(app.state, "pool", None) is None:
        # An app on a test's shared connection has no pool and no other process to hear.
        return stop.set
    thread = threading.Thread(
        target=keys.listen,
        args=(lambda: _conninfo(app),),
        kwargs={
            "on_change": lambda _payload: cache.clear(),
            "on_connected": cache.set_listening,
            "stop": stop,
        },
        name="jointgrid-revocations",
        daemon=True,
    )
    thread.start()

    def halt() -> None:
        # Not joined: the thread sees the event within a second and closes its connection;
        # waiting for it would add that second to every shutdown (and to every test's app).
        stop.set()
        cache.set_listening(False)

    return halt


def _lookup(request: Request, kind: str, token: str) -> dict[str, Any] | None:
    cache = _cache(request)
    hit, value = cache.get(f"{kind}:{token}")
    if hit:
        return value
    since = cache.generation
    # The connection this request holds (api.deps.get_conn), or the one `check` leased for
    # the look-up: never a second one taken here, and never a wait for one on this thread.
    conn = getattr(request.state, "conn", None)
    if conn is None:
        raise _NeedsDatabase
    value = keys.verify(conn, token) if kind == "key" else keys.session(conn, token)
    cache.put(f"{kind}:{token}", value, since=since)
    return value


class _NeedsDatabase(Exception):
    """The credentials are not cached: the look-up needs a connection."""


def _authenticate_on(conn: Any, request: Request, param_key: str | None) -> Principal:
    """``authenticate`` with a leased connection (on the database's threads)."""
    request.state.conn = conn
    try:
        return authenticate(request, param_key)
    finally:
        request.state.conn = None


def authenticate(request: Request, param_key: str | None = None) -> Principal:
    """The caller of this request; raises ``Unauthenticated`` for bad credentials.

    ``param_key`` is a key sent as a request parameter, for protocols that name one (Open311's
    ``api_key``); the Authorization header wins when both are given.
    """
    auth = request.headers.get("authorization") or (f"Bearer {param_key}" if param_key else None)
    if auth:
        token = _bearer(request, param_key)
        if token is None:
            raise Unauthenticated("send the API key as: Authorization: Bearer <key>")
        rec = _lookup(request, "key", token)
        if rec is None:
            raise Unauthenticated("the API key is unknown or has been revoked")
        return Principal(rec["id"], rec["role"], rec["side"], rec["team"], rec["name"], "bearer")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        rec = _lookup(request, "session", cookie)
        if rec is None:
            raise Unauthenticated("the session has expired; sign in again at /login")
        if (
            request.method not in SAFE_METHODS
            and request.headers.get("x-csrf-token") != rec["csrf"]
        ):
            raise Forbidden(
                "missing or wrong CSRF token: pages send it in the X-CSRF-Token header",
                {"hint": "reload the page and try again"},
            )
        return Principal(
            rec["id"], rec["role"], rec["side"], rec["team"], rec["name"], "session", rec["csrf"]
        )
    return Principal()


def allow(
    *roles: str, public_feed: bool = False, anyone: bool = False, key_param: str | None = None
) -> Any:
    """The access rule of one route, as a dependency that returns the caller.

    ``key_param`` names a query or form field that may carry the key (Open311's ``api_key``).
    """
    unknown = set(roles) - set(ALL_ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")
    rule = Rule(tuple(roles), public_feed, anyone)

    async def check(request: Request) -> Principal:
        param = None
        if key_param:
            param = request.query_params.get(key_param)
            ctype = request.headers.get("content-type", "")
            if param is None and ctype.startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            ):
                value = (await request.form()).get(key_param)  # cached for the handler
                param = value if isinstance(value, str) else None
        # A cached key is answered here; a look-up that may touch the database runs off the
        # event loop.
        token = _bearer(request, param or None)
        if token is not None:
            hit, rec = _cache(request).get(f"key:{token}")
            if hit and rec is not None:
                who = Principal(
                    rec["id"], rec["role"], rec["side"], rec["team"], rec["name"], "bearer"
                )
                return _permit(rule, who, request)

        # A look-up that needs the database leases a connection for it (api.deps.database),
        # waiting on the event loop, unless the request already holds one.
        async def who_is() -> Principal:
            if getattr(request.state, "conn", None) is not None:
                return await anyio.to_thread.run_sync(authenticate, request, param or None)
            try:
                return authenticate(request, param or None)  # from the cache, or no credentials
            except _NeedsDatabase:
                return await database(request).run(_authenticate_on, request, param or None)

        if rule.anyone:
            # Open routes never fail on credentials: stale ones (signing in again), nor ones that
            # cannot be checked while the database is away, so /healthz answers with its own
            # body.
            try:
                return await who_is()
            except (Unauthenticated, Forbidden, Unavailable):
                return Principal()
        return _permit(rule, await who_is(), request)

    check.access_rule = rule  # type: ignore[attr-defined]
    return Depends(check)


def _bearer(request: Request, param_key: str | None) -> str | None:
    """The key of a well-formed Bearer header (or key parameter), else None."""
    auth = request.headers.get("authorization") or (f"Bearer {param_key}" if param_key else None)
    if not auth:
        return None
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _permit(rule: Rule, who: Principal, request: Request) -> Principal:
    """Apply a route's rule to an authenticated caller."""
    if rule.anyone:
        return who
    if who.anonymous:
        if rule.public_feed and request.app.state.public_feeds:
            return who
        raise Unauthenticated(
            "this needs an API key: send Authorization: Bearer <key> (ask an admin for one)",
            {"roles": list(rule.roles)},
        )
    if who.role not in rule.roles:
        raise Forbidden(f"a {who.role} key may not do this", {"roles": list(rule.roles)})
    return who
