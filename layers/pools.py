"""The server's connection pools: how a pooled connection is made, checked and set up.

``api.app.make_pool`` builds one from the settings; ``layers.db.Database`` hands its
connections out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool

ServerPool = ConnectionPool[Any]


def work_as_app_role(conn: Any) -> None:
    """Work as `jointgrid_app` where it exists: it may only append to the audit trail.

    Also reads JSON columns with orjson: the same values as the standard library's parser,
    in a fraction of the time (a report reads back its facts and its stored case as JSON).
    """
    set_json_loads(orjson.loads, conn)
    row = conn.execute(
        "SELECT 1 FROM pg_roles WHERE rolname = 'jointgrid_app'"
        " AND pg_has_role(current_user, 'jointgrid_app', 'MEMBER')"
    ).fetchone()
    if row:
        conn.execute("SET ROLE jointgrid_app")


# A pooled connection idle for longer than this is checked (one round trip) before it is
# handed out; one used more recently is not. Under load every checkout skips the check; after
# a database restart, a connection that was in use just before fails its next statement
# (a 503, and the pool replaces it), any older one is weeded out by the check.
CHECK_AFTER_IDLE_S = 1.0


class Pool(ConnectionPool[Any]):
    """The connection pool, remembering when each connection was last given back."""

    def putconn(self, conn: Any) -> None:
        conn._jg_idle_since = time.monotonic()
        super().putconn(conn)


def check_if_idled(conn: Any) -> None:
    """The pool's check: a round trip only for a connection that idled (or was never used)."""
    since = getattr(conn, "_jg_idle_since", None)
    if since is None or time.monotonic() - since > CHECK_AFTER_IDLE_S:
        ConnectionPool.check_connection(conn)


def server_pool(
    conninfo: Callable[[], str],
    *,
    min_size: int,
    max_size: int,
    connect_timeout_s: float,
    statement_timeout_ms: int,
    open_now: bool = True,
    name: str = "jointgrid",
) -> ServerPool:
    """A connection pool that opens without waiting, so the server starts while the database is down."""
    pool: ServerPool = Pool(
        # A function, not a string: the pool asks it for every new connection, so the server
        # logs in as its own role (never the owner) and finds a database that came back on
        # another address (the private cluster's recorded URL is read afresh).
        conninfo,
        min_size=min_size,
        max_size=max_size,
        kwargs={
            "row_factory": dict_row,
            "connect_timeout": max(1, int(connect_timeout_s)),
            # A database host that vanishes (its machine dies, the network is cut) closes no
            # socket: without these a query already sent would wait for TCP's own timeout
            # (minutes) instead of failing over (docs/reliability.md, "A replicated cluster").
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
            # JIT off for the server's own work: its statements are short, and a plan whose
            # cost passes jit_above_cost on province-size tables compiled for seconds per
            # call (the facts of one point: 4.4 s against 2.7 ms without).
            "options": f"-c statement_timeout={statement_timeout_ms} -c jit=off",
            # Every unit of work is an explicit `conn.transaction()` that commits when it ends,
            # so an acknowledged report is durable before the response leaves.
            "autocommit": True,
        },
        open=False,
        name=name,
        # No long background reconnection loop during an outage: each request that needs a
        # connection tries afresh, so the server recovers as soon as the database is back.
        reconnect_timeout=0,
        check=check_if_idled,
        configure=work_as_app_role,
    )
    if open_now:
        pool.open(wait=False)
    return pool
