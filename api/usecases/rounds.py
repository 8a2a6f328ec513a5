"""The server's background workers' loop: rounds of work on a connection of their own, found
again after the database moves or restarts (the delivery worker, the patrol worker)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from layers.db import Conn


def run_rounds(
    connect: Callable[[], Conn],
    once: Callable[[Conn], bool],
    *,
    stop: threading.Event,
    idle_s: float,
    what: str,
    log: logging.Logger,
) -> None:
    """Call ``once(conn)`` until ``stop`` is set: rounds back to back while it says there is
    more to do, a pause of ``idle_s`` when not, and a new connection (in autocommit) after a
    round failed, so that an outage costs a few rounds and never the worker."""
    conn: Conn | None = None
    while not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = connect()
                if not conn.autocommit:
                    conn.commit()  # keeps what the connection set up (SET ROLE)
                    conn.autocommit = True
            if once(conn):
                continue
        except Exception:  # keep the worker alive through outages; the next round retries
            log.warning("%s failed; retrying shortly", what, exc_info=True)
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            conn = None
        stop.wait(idle_s)
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
