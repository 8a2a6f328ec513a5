"""Reads from the standbys of a replicated cluster, and only from those that are fresh.

The server's database URL may name several hosts (``host=a,b port=5432,5433`` or
``postgresql://u:p@a:5432,b:5433/db``), as a pg_auto_failover cluster's does. The write pool
uses that string as it is, with ``target_session_attrs=read-write``: libpq tries the hosts in
turn and keeps the one that takes writes, so after a failover the pool finds the new primary
by itself. Reads that may be a moment old (feeds, map data, the dashboard) go to a pool of
their own on one standby.

One pool per host, because a pool on a multi-host string (``prefer-standby``) would keep a
connection to a standby that has fallen behind, and psycopg_pool cannot drop one host of its
string. A checker (:class:`Replicas`, one thread) asks every host once per ``interval_s``
what it is and how far behind the primary it has replayed; a standby whose lag passes
``max_lag_s`` or ``max_lag_bytes``, or that does not answer, leaves the read pool until it has
caught up. With no usable standby, reads go to the primary (through its own read pool).

Lag in bytes is the primary's current WAL position less the standby's replayed one, both read
in the same round. Lag in time is how old the last replayed transaction is while the standby
has received WAL it has not replayed yet (zero once it has replayed all it received: an idle
standby is not late). While the primary is unreachable (a failover), the bytes cannot be
measured, and the time lag grows with the clock if any WAL received stays unreplayed: a standby
then keeps the place it had when a primary last answered. Nothing newer
can be acknowledged meanwhile, and it holds every acknowledged write (replication is
synchronous while both nodes are healthy), so reads go on from it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from layers.db import Source

log = logging.getLogger("jointgrid")

PROBE = """
SELECT pg_is_in_recovery() AS standby,
       inet_server_addr()::text AS addr, inet_server_port() AS port,
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
            ELSE pg_current_wal_lsn() END::text AS lsn,
       CASE WHEN pg_is_in_recovery()
                 AND pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn()
            THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
            ELSE 0 END AS lag_s
"""


def hosts_of(conninfo: str) -> list[tuple[str, str]]:
    """The (host, port) pairs a connection string names, in order."""
    params = conninfo_to_dict(conninfo)
    hosts = str(params.get("host") or "").split(",")
    ports = str(params.get("port") or "5432").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    return [(h.strip(), p.strip()) for h, p in zip(hosts, ports, strict=False) if h.strip()]


def one_host(conninfo: str, host: str, port: str) -> str:
    """The same login and database on ``host:port`` alone, whatever role it has."""
    params = conninfo_to_dict(conninfo)
    params.update(host=host, port=port)
    params.pop("hostaddr", None)
    params["target_session_attrs"] = "any"
    return make_conninfo(**params)  # type: ignore[arg-type]


def lsn_bytes(lsn: str | None) -> int | None:
    """``'16/B374D848'`` as a byte position."""
    if not lsn:
        return None
    hi, _, lo = lsn.partition("/")
    return (int(hi, 16) << 32) + int(lo, 16)


@dataclass
class Node:
    """One host of the cluster, its read pool, and what the checker last saw of it."""

    host: str
    port: str
    source: Source
    role: str = "unknown"  # primary, standby, unreachable
    lag_s: float | None = None
    lag_bytes: int | None = None
    usable: bool = False
    reason: str = "not checked yet"
    checked_at: float = 0.0
    _probe: psycopg.Connection[Any] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


class Replicas:
    """The read pools of a replicated cluster and the checker that keeps them fresh."""

    def __init__(
        self,
        nodes: list[Node],
        *,
        conninfo: Callable[[], str],
        max_lag_s: float,
        max_lag_bytes: int,
        interval_s: float,
        connect_timeout_s: float = 2.0,
    ) -> None:
        self.nodes = nodes
        self._conninfo = conninfo
        self.max_lag_s = max_lag_s
        self.max_lag_bytes = max_lag_bytes
        self.interval_s = interval_s
        self.connect_timeout_s = connect_timeout_s
        self._turn = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0

    # -- choosing

    def choose(self) -> Source | None:
        """A fresh standby's source (in turn, when there are several); else the read pool of
        the node last seen as primary (its connections are already open: at a promotion the
        write pool may still be looking for the new primary); else None (the write pool)."""
        usable = [n for n in self.nodes if n.usable] or [
            n for n in self.nodes if n.role == "primary"
        ]
        if not usable:
            return None
        return usable[next(self._turn) % len(usable)].source

    # -- checking

    def _probe(self, node: Node) -> dict[str, Any]:
        conn = node._probe
        if conn is None or conn.closed:
            conn = psycopg.connect(
                one_host(self._conninfo(), node.host, node.port),
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=max(1, int(self.connect_timeout_s)),
                options=f"-c statement_timeout={int(self.connect_timeout_s * 1000)}",
            )
            node._probe = conn
        try:
            row = conn.execute(PROBE).fetchone()
        except psycopg.Error:
            with contextlib.suppress(Exception):
                conn.close()
            node._probe = None
            raise
        assert row is not None
        return row

    def check(self) -> None:
        """One round: every host's role and lag; standbys join or leave the read pool."""
        seen: dict[str, dict[str, Any] | None] = {}
        for node in self.nodes:
            try:
                seen[node.name] = self._probe(node)
            except (psycopg.Error, OSError) as exc:
                seen[node.name] = None
                node.reason = (str(exc).strip().splitlines() or ["unreachable"])[0][:200]
        primary_lsn = max(
            (lsn_bytes(r["lsn"]) or 0 for r in seen.values() if r and not r["standby"]),
            default=None,
        )
        now = time.monotonic()
        for node in self.nodes:
            row = seen[node.name]
            was = node.usable
            node.checked_at = now
            if row is None:
                node.role, node.lag_s, node.lag_bytes, node.usable = (
                    "unreachable",
                    None,
                    None,
                    False,
                )
            elif not row["standby"]:
                node.role, node.lag_s, node.lag_bytes = "primary", 0.0, 0
                # The primary serves reads only while no standby is fresh (choose).
                node.usable, node.reason = False, "primary (serves reads when no standby is fresh)"
            elif primary_lsn is None:
                # No primary answers (a failover): nothing newer than what the standby holds
                # can be acknowledged meanwhile, and its time lag would grow with the clock if
                # any WAL it received stays unreplayed. It keeps the place it had when a
                # primary was last seen.
                node.role, node.lag_bytes = "standby", None
                node.lag_s = float(row["lag_s"] or 0.0)
                node.reason = (
                    "no primary answers; fresh when one last did"
                    if node.usable
                    else "no primary answers; was not fresh before"
                )
            else:
                node.role = "standby"
                node.lag_s = float(row["lag_s"] or 0.0)
                mine = lsn_bytes(row["lsn"])
                node.lag_bytes = (
                    max(0, primary_lsn - mine)
                    if primary_lsn is not None and mine is not None
                    else None
                )
                if node.lag_s > self.max_lag_s:
                    node.usable, node.reason = (
                        False,
                        f"lag {node.lag_s:.1f} s > {self.max_lag_s:g} s",
                    )
                elif node.lag_bytes is not None and node.lag_bytes > self.max_lag_bytes:
                    node.usable = False
                    node.reason = f"lag {node.lag_bytes} bytes > {self.max_lag_bytes}"
                else:
                    node.usable, node.reason = True, "fresh"
            if node.usable != was:
                log.info(
                    "standby %s %s the read pool (%s)",
                    node.name,
                    "joins" if node.usable else "leaves",
                    node.reason,
                )
        self.rounds += 1

    def report(self) -> list[dict[str, Any]]:
        """What /healthz shows of each host."""
        return [
            {
                "node": n.name,
                "role": n.role,
                "lag_s": None if n.lag_s is None else round(n.lag_s, 3),
                "lag_bytes": n.lag_bytes,
                "in_read_pool": n.usable,
                "reason": n.reason,
            }
            for n in self.nodes
        ]

    # -- the thread

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.check()
            except Exception:  # keep checking through anything
                log.warning("the standby check failed", exc_info=True)
            self._stop.wait(max(0.05, self.interval_s - (time.monotonic() - started)))

    def start(self) -> None:
        """Check once now (so the first reads already go to a standby), then every interval."""
        with contextlib.suppress(Exception):
            self.check()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="standby-check", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for node in self.nodes:
            if node._probe is not None:
                with contextlib.suppress(Exception):
                    node._probe.close()
                node._probe = None
            node.source.close()
            if node.source.pool is not None:
                with contextlib.suppress(Exception):
                    node.source.pool.close()
