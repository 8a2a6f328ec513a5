"""Database access: connections, the one place that translates driver errors, SQL files, migrations.

Only ``layers/`` talks to PostgreSQL. Functions take the connection first so that callers see
and own the transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerr
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from gis.errors import (
    Conflict,
    InvalidGeometry,
    InvalidInput,
    NotFound,
)
from layers.errors import DatabaseUnavailable, Overloaded, Unavailable
from layers.roles import default_grants

Conn = psycopg.Connection[Any]
DriverError = psycopg.Error  # what escapes translate_errors(): the CLI's last resort names it
T = TypeVar("T")
log = logging.getLogger("jointgrid")

MIGRATION_LOCK = 7_311_001  # advisory lock key: one migrator at a time


# Our own words for the SQLSTATEs of values PostgreSQL refuses (class 22, data exceptions).
# The client gets these and the SQLSTATE's name; PostgreSQL's own text, which quotes values,
# column types and sometimes internals, goes to the server log only.
DATA_PROBLEMS: dict[type[psycopg.Error], str] = {
    pgerr.InvalidDatetimeFormat: "a date or time is not in ISO 8601 form",
    pgerr.DatetimeFieldOverflow: "a date or time is out of range",
    pgerr.InvalidTimeZoneDisplacementValue: "a time zone offset is out of range",
    pgerr.NumericValueOutOfRange: "a number is out of range",
    pgerr.DivisionByZero: "a calculation divided by zero",
    pgerr.InvalidTextRepresentation: "a value does not have the form its field needs",
    pgerr.StringDataRightTruncation: "a text is longer than its field allows",
    pgerr.CharacterNotInRepertoire: "a text holds a character that cannot be stored",
    pgerr.UntranslatableCharacter: "a text holds a character that cannot be stored",
    pgerr.InvalidParameterValue: "a parameter has a value outside what is accepted",
    pgerr.InvalidRegularExpression: "a pattern is not a valid regular expression",
    pgerr.InvalidJsonText: "a JSON value is malformed",
    pgerr.InvalidEscapeSequence: "a text holds an invalid escape sequence",
    pgerr.ArraySubscriptError: "a list is longer or shorter than expected",
}


def _data_problem(exc: psycopg.Error) -> str:
    for cls in type(exc).__mro__:
        if cls in DATA_PROBLEMS:
            return DATA_PROBLEMS[cls]
    return "a value cannot be stored or compared as given"


def data_detail(exc: BaseException) -> dict[str, Any]:
    """Log the database's own text (the server's log only) and say what the client may know."""
    sqlstate = getattr(exc, "sqlstate", None)
    log.warning("database refused a value (%s): %s", sqlstate, _first_line(exc))
    return {"sqlstate": sqlstate} if sqlstate else {}


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver errors into domain errors, so no caller needs to know psycopg.

    Connection failures become ``DatabaseUnavailable`` (HTTP 503); constraint violations become
    ``Conflict`` or ``InvalidInput``; PostGIS geometry errors become ``InvalidGeometry``.
    No text of PostgreSQL's reaches a client: each error gets our own message, with at most
    the SQLSTATE and, for constraints, the constraint's name, which is ours (the migrations).
    PostgreSQL's message goes to the server's log.
    """
    try:
        yield
    except pgerr.ProgramLimitExceeded as exc:
        # class 54 is an OperationalError to the driver, but the request's doing: a NUL
        # character, a text or an array too long, an expression too complex
        raise InvalidInput(
            "a value is beyond what the database can take (too long, too deep, or a NUL)",
            data_detail(exc),
        ) from exc
    except (
        psycopg.OperationalError,
        pgerr.AdminShutdown,
        pgerr.CannotConnectNow,
        # a write on a node that has just become a standby (a switchover, a failover): the
        # pool replaces the connection, the client retries and reaches the new primary
        pgerr.ReadOnlySqlTransaction,
    ) as exc:
        log.warning("database unavailable: %s", _first_line(exc))
        raise DatabaseUnavailable(
            "the database is not reachable; retry shortly", {"retry_after_s": 5}
        ) from exc
    except pgerr.UniqueViolation as exc:
        raise Conflict("a record with this key already exists", _diag(exc)) from exc
    except pgerr.ForeignKeyViolation as exc:
        raise InvalidInput("a referenced record does not exist", _diag(exc)) from exc
    except (pgerr.CheckViolation, pgerr.NotNullViolation) as exc:
        raise InvalidInput("a value breaks a rule of the data model", _diag(exc)) from exc
    except psycopg.DataError as exc:
        # Values PostgreSQL cannot take: NUL bytes in text, numbers out of range, bad dates.
        raise InvalidInput(_data_problem(exc), data_detail(exc)) from exc
    except UnicodeEncodeError as exc:
        # A str the driver cannot send as UTF-8: a lone surrogate ("\ud800") from some input.
        raise InvalidInput(
            "a text holds a lone surrogate (not a Unicode character); send valid UTF-8",
            {"fix": "encode text as UTF-8; surrogates only come in high-low pairs"},
        ) from exc
    except pgerr.NoDataFound as exc:
        raise NotFound("no such record", data_detail(exc)) from exc
    except pgerr.InternalError as exc:
        # PostGIS reports geometry problems (e.g. a self-intersection GEOS cannot handle) as
        # XX000 with a message naming the geometry library.
        msg = _first_line(exc)
        if re.search(r"geos|geometry|lwgeom|ring", msg, re.I):
            raise InvalidGeometry("the geometry could not be processed", data_detail(exc)) from exc
        raise


def begin_snapshot(conn: Conn) -> None:
    """Start a ``REPEATABLE READ, READ ONLY`` transaction: every query until it ends sees one
    snapshot (a page and its count agree). A connection already inside a transaction (a test's
    shared one) keeps it."""
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _diag(exc: psycopg.Error) -> dict[str, Any]:
    data_detail(exc)
    return {"constraint": exc.diag.constraint_name, "sqlstate": exc.sqlstate}


def connect(url: str, **kwargs: Any) -> Conn:
    """Open a connection returning dict rows; database errors come out as domain errors."""
    with translate_errors():
        return psycopg.connect(url, row_factory=dict_row, **kwargs)


@functools.cache
def sql(name: str) -> str:
    """The text of ``layers/sql/<name>.sql``, loaded once."""
    return (resources.files("layers") / "sql" / f"{name}.sql").read_text(encoding="utf-8")


# -- schema: numbered migrations and function source files --------------------------------
#
# Numbered migrations (layers/migrations/NNNN_*.sql) carry schema changes only, each applied
# once and recorded in schema_migrations. Every SQL function's current text lives in one
# file of its own, layers/functions/<name>.sql (CREATE OR REPLACE, idempotent), and every
# migrate applies all of them after the migrations, as pgstac keeps its functions: a
# function exists once in the tree, and changing it means editing its file.
#
# Ordering rule. A migration that uses one of these functions while it runs (a trigger, an
# index or a generated column over it, a DO block calling it) names it in a header line
#     -- needs: name, other_name
# and the migrator applies those files first, in the migration's own transaction, with
# check_function_bodies off (a body may name tables or columns of a later migration: it is
# checked when the final pass applies it again over the whole schema). The final pass
# applies every file in name order. A function whose arguments or result type change is a
# schema change: a numbered migration drops the old signature (DROP FUNCTION IF EXISTS), and
# the file creates the new one. An IMMUTABLE function behind an index or a generated column
# whose result changes needs a migration that rebuilds them.

_NEEDS = re.compile(r"^--\s*needs:\s*(.+)$", re.MULTILINE)


def _sql_files(folder: str) -> dict[str, str]:
    """``{file name: text}`` of the ``.sql`` files of ``layers/<folder>``, in name order."""
    base = resources.files("layers") / folder
    names = sorted(p.name for p in base.iterdir() if p.name.endswith(".sql"))
    return {n: (base / n).read_text(encoding="utf-8") for n in names}


def function_names() -> list[str]:
    """The functions kept as source files (``layers/functions/<name>.sql``)."""
    return [n.removesuffix(".sql") for n in _sql_files("functions")]


def migration_needs(text: str) -> list[str]:
    """The function files a migration's ``-- needs:`` header lines name, in order."""
    known = set(function_names())
    names = [n.strip() for line in _NEEDS.findall(text) for n in line.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise RuntimeError(f"a migration needs functions with no file: {', '.join(unknown)}")
    return names


def apply_functions(conn: Conn, names: list[str] | None = None, *, check: bool = True) -> None:
    """Apply the function files ``names`` (all of them by default) in the current transaction.

    ``check=False`` sets check_function_bodies off for the transaction (a migration's needs).
    """
    files = _sql_files("functions")
    row = conn.execute("SELECT current_setting('check_function_bodies') AS v").fetchone()
    before = str(row["v"]) if row else "on"
    conn.execute(
        "SELECT set_config('check_function_bodies', %s, true)", ("on" if check else "off",)
    )
    for name in names if names is not None else function_names():
        conn.execute(files[f"{name}.sql"])
    conn.execute("SELECT set_config('check_function_bodies', %s, true)", (before,))


def migrate(conn: Conn) -> list[str]:
    """Apply the numbered migrations not yet recorded, then every function file; return the former.

    Each migration runs in its own transaction (after the function files it needs), the
    function files in one more, and an advisory lock keeps two migrators apart.
    """
    applied: list[str] = []
    with translate_errors():
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            with conn.transaction():
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version text PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            done = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations")}
            default_grants(conn)  # new tables reach the server's role (layers/roles.py)
            for name, text in _sql_files("migrations").items():
                version = name.split("_", 1)[0]
                if version in done:
                    continue
                with conn.transaction():
                    apply_functions(conn, migration_needs(text), check=False)
                    conn.execute(text)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied.append(name)
            with conn.transaction():
                apply_functions(conn)
            default_grants(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied


def try_xact_lock(conn: Conn, key: int) -> bool:
    """Take the transaction-level advisory lock ``key`` if it is free; whether it was taken."""
    with translate_errors():
        row = conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS ok", (key,)).fetchone()
    return bool(row and row["ok"])


def postgis_version(conn: Conn) -> str:
    """The PostGIS library version, e.g. ``3.3.2``; empty on a database not yet migrated (the
    extension, and so the function, are not there yet)."""
    with translate_errors():
        there = conn.execute(
            "SELECT to_regproc('postgis_lib_version') IS NOT NULL AS ok"
        ).fetchone()
        if not (there and there["ok"]):
            return ""
        row = conn.execute("SELECT postgis_lib_version() AS v").fetchone()
    return str(row["v"]) if row else ""


def node_of(conn: Conn) -> dict[str, Any]:
    """The node a connection reached (``host:port``) and its role, primary or standby."""
    with translate_errors():
        row = conn.execute("SELECT pg_is_in_recovery() AS standby").fetchone()
    return {
        "node": f"{conn.info.host}:{conn.info.port}",
        "role": "standby" if row and row["standby"] else "primary",
    }


def pending_migrations(conn: Conn) -> list[str]:
    """The migration files not yet applied to this database (empty when up to date)."""
    names = list(_sql_files("migrations"))
    with translate_errors():
        exists = conn.execute(
            "SELECT to_regclass('schema_migrations') IS NOT NULL AS ok"
        ).fetchone()
        done = (
            {r["version"] for r in conn.execute("SELECT version FROM schema_migrations")}
            if exists and exists["ok"]
            else set()
        )
    return [n for n in names if n.split("_", 1)[0] not in done]


# -- where every connection comes from ------------------------------------------------------
#
# One primitive for the whole server: a unit of work (a handler, a report, a key look-up) or a
# streaming response takes a *permit* first, on the event loop, and only then a connection, on
# a thread of the pool's own set. There are exactly as many permits as the pool has
# connections, and as many threads (plus a spare or two) as permits. So:
# - no thread ever waits for a connection: waiting happens on the event loop, where a waiter
#   holds nothing and blocks nobody;
# - a holder of a connection never waits for a thread that a waiter holds, which is the
#   deadlock of a shared thread pool (every worker blocked waiting for a connection, every
#   connection held by a request waiting for a worker) that answered false 503s;
# - a wait that runs out means one of two different things, told apart by what this source
#   last saw of the database: every connection busy while the database answers (`Overloaded`),
#   or the database not answering (`DatabaseUnavailable`).


def _tidy(conn: Conn) -> None:
    """Bring a connection back to idle before the pool takes it, quietly: a read-only
    transaction left open is rolled back, a statement still running is cancelled and the
    connection closed (the pool then replaces it)."""
    status = conn.info.transaction_status
    try:
        if status == psycopg.pq.TransactionStatus.ACTIVE:
            conn.cancel_safe(timeout=2.0)
            conn.close()
        elif status in (psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR):
            conn.rollback()
    except Exception:
        conn.close()


class Lease:
    """One connection held by one caller: for a unit of work, or for the whole life of a
    streaming response. Work on it runs on the source's threads (``run``, ``submit``); it goes
    back exactly once (``release``), after the last of that work has finished."""

    __slots__ = ("_busy", "_discard", "_gate", "_loop", "_released", "conn", "source")

    def __init__(
        self, source: Source, gate: asyncio.Semaphore, loop: asyncio.AbstractEventLoop, conn: Conn
    ) -> None:
        self.source = source
        self.conn = conn
        self._gate = gate
        self._loop = loop
        self._busy: Future[Any] | None = None
        self._discard = False
        self._released = False

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Start ``fn(conn, *args, **kwargs)`` on the source's threads, with database errors
        translated; await the result, or not (a stream's reader)."""
        work = functools.partial(self.source._call, fn, self.conn, args, kwargs)
        self._busy = self.source.executor.submit(work)
        return asyncio.wrap_future(self._busy)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(conn, *args, **kwargs)`` on the source's threads; its result."""
        return await self.submit(fn, *args, **kwargs)

    def cancel(self) -> None:
        """Cancel the statement running on this connection (a client left mid-stream); the
        connection is then closed, never reused."""
        self._discard = True
        with contextlib.suppress(Exception):
            self.conn.cancel_safe(timeout=2.0)

    async def release(self, *, failed: bool = False) -> None:
        """Give the connection back and the permit with it, once. Safe to cancel: the
        hand-back finishes on its thread and frees the permit whatever happens here."""
        if self._released:
            return
        self._released = True
        busy, gate, loop = self._busy, self._gate, self._loop

        def give() -> None:
            if busy is not None:  # the last piece of work must be over first
                with contextlib.suppress(BaseException):
                    busy.result(timeout=60)
                discard = self._discard or not busy.done()
            else:
                discard = self._discard
            try:
                self.source._give(self.conn, failed=failed, discard=discard)
            except Exception:  # a closed pool (shutting down): nothing to give back to
                log.warning("could not give a connection back to its pool", exc_info=True)

        done = self.source.executor.submit(give)
        done.add_done_callback(lambda _f: _threadsafe(loop, gate.release))
        await asyncio.shield(asyncio.wrap_future(done))


def _threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits for a permit
        loop.call_soon_threadsafe(fn)


class Source:
    """One pool of connections, its permits and its threads (see the comment above)."""

    def __init__(
        self, pool: ConnectionPool[Any] | None, *, wait_s: float, size: int | None = None
    ) -> None:
        self.pool = pool
        self.size = size or (pool.max_size if pool is not None else 1)
        self.wait_s = wait_s
        self._name = f"jointgrid-{pool.name}" if pool is not None else "jointgrid-db"
        self.executor = self._threads()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gate: asyncio.Semaphore | None = None
        # What this source last saw of the database (time.monotonic()): a connection or a
        # finished unit of work, or a failure to connect or a broken connection.
        self.last_ok = 0.0
        self.last_failure = 0.0

    # -- the permit, on the event loop

    def _permits(self) -> tuple[asyncio.Semaphore, asyncio.AbstractEventLoop]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._gate is None:
            # One event loop serves an app at a time (the server's, or a test client's own);
            # a semaphore belongs to the loop it is used on.
            self._loop, self._gate = loop, asyncio.Semaphore(self.size)
        return self._gate, loop

    async def _permit(self) -> tuple[asyncio.Semaphore, asyncio.AbstractEventLoop]:
        gate, loop = self._permits()
        if not gate.locked():
            await gate.acquire()  # free: returns at once
            return gate, loop
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(self.wait_s):
                await gate.acquire()
        except TimeoutError:
            raise self.refusal(time.monotonic() - t0) from None
        return gate, loop

    def refusal(self, waited_s: float) -> Unavailable:
        """The error for a wait that ran out: overloaded, unless the database was last seen
        failing."""
        if self.last_failure > self.last_ok:
            return DatabaseUnavailable(
                "the database is not reachable; retry shortly",
                {"waited_s": round(waited_s, 1)},
            )
        return Overloaded(
            f"the server is overloaded: all {self.size} database connections stayed busy for "
            f"{waited_s:.1f} s; the database itself answers. Retry in a few seconds",
            {
                "connections": self.size,
                "waited_s": round(waited_s, 1),
                "retry_after_s": Overloaded.retry_after_s,
            },
        )

    # -- the connection, on a thread of this source

    def _take(self, timeout: float) -> Conn:
        assert self.pool is not None
        try:
            conn = self.pool.getconn(timeout=timeout)
        except PoolTimeout as exc:
            # A permit was free, so a connection would have been too: the pool could not
            # open one in time.
            self.last_failure = time.monotonic()
            raise DatabaseUnavailable(
                "the database is not reachable; retry shortly",
                {"reason": f"no connection could be opened within {timeout:.1f} s"},
            ) from exc
        self.last_ok = time.monotonic()
        return conn

    def _give(self, conn: Conn, *, failed: bool, discard: bool) -> None:
        assert self.pool is not None
        try:
            if discard:
                conn.close()
            else:
                _tidy(conn)
        finally:
            self.pool.putconn(conn)

    def _call(self, fn: Callable[..., T], conn: Conn, args: Any, kwargs: Any) -> T:
        try:
            with translate_errors():
                out = fn(conn, *args, **kwargs)
        except DatabaseUnavailable:
            self.last_failure = time.monotonic()
            raise
        self.last_ok = time.monotonic()
        return out

    def note(self, exc: BaseException | None) -> None:
        """Record how a unit of work that ran elsewhere (a sync handler) ended."""
        if isinstance(exc, DatabaseUnavailable | psycopg.OperationalError):
            self.last_failure = time.monotonic()
        elif exc is None:
            self.last_ok = time.monotonic()

    # -- the public ways in

    async def acquire(self) -> Lease:
        """A lease on a connection, for a caller that releases it itself (a stream)."""
        gate, loop = await self._permit()
        try:
            taking = self.executor.submit(self._take, max(1.0, self.wait_s))
        except BaseException:
            gate.release()
            raise
        try:
            conn = await asyncio.shield(asyncio.wrap_future(taking))
        except BaseException:
            # The take failed, or the caller was cancelled while it ran: give back whatever it
            # took once it is done, then the permit.
            def undo(f: Future[Conn]) -> None:
                try:
                    if not f.cancelled() and f.exception() is None:
                        self._give(f.result(), failed=True, discard=False)
                finally:
                    _threadsafe(loop, gate.release)

            taking.add_done_callback(undo)
            raise
        return Lease(self, gate, loop, conn)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Lease]:
        """A lease for the length of the ``async with`` block; errors raised in the block
        (also by a sync handler using ``lease.conn``) come out translated."""
        lease = await self.acquire()
        failed: BaseException | None = None
        try:
            with translate_errors():
                yield lease
        except BaseException as exc:
            failed = exc
            raise
        finally:
            self.note(failed)
            await lease.release(failed=failed is not None)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One unit of work in a single thread hop: take a connection, call
        ``fn(conn, *args, **kwargs)`` with errors translated, give the connection back.

        A client that hangs up does not stop the work: the thread finishes it and gives the
        connection back, and only then is the permit free again."""
        gate, loop = await self._permit()
        work = functools.partial(self._unit, fn, args, kwargs)
        try:
            done = self.executor.submit(work)
        except BaseException:
            gate.release()
            raise
        done.add_done_callback(lambda _f: _threadsafe(loop, gate.release))
        return await asyncio.wrap_future(done)

    def _unit(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        conn = self._take(max(1.0, self.wait_s))
        failed = True
        try:
            out = self._call(fn, conn, args, kwargs)
            failed = False
            return out
        finally:
            self._give(conn, failed=failed, discard=False)

    def _threads(self) -> ThreadPoolExecutor:
        # As many threads as permits, and a spare for the hand-back of a lease whose last
        # piece of work is still finishing: a thread is never what a unit of work waits for.
        return ThreadPoolExecutor(self.size + 2, thread_name_prefix=self._name)

    def close(self) -> None:
        """Let the threads finish and end (a fresh set starts if the app is started again)."""
        old, self.executor = self.executor, self._threads()
        old.shutdown(wait=False)


class Database:
    """The server's database: ``write`` for everything that may change data and for reads that
    must see the latest write, and ``read`` for feeds, map data and dashboards.

    On one server both are the same pool. On a replicated cluster (``layers.replicas``),
    ``read`` is, at each call, the pool of a standby that is fresh enough, or the write pool
    when none is.
    """

    def __init__(self, write: Source, read: Source | None = None, *, replicas: Any = None) -> None:
        self.write = write
        self._read = read or write
        self.replicas = replicas  # layers.replicas.Replicas, when there are standbys

    @property
    def read(self) -> Source:
        if self.replicas is not None:
            return self.replicas.choose() or self.write
        return self._read

    @classmethod
    def from_pools(
        cls,
        write: ConnectionPool[Any],
        read: ConnectionPool[Any] | None = None,
        *,
        wait_s: float,
    ) -> Database:
        w = Source(write, wait_s=wait_s)
        return cls(w, Source(read, wait_s=wait_s) if read is not None else None)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``write.run``: one unit of work on the write pool."""
        return await self.write.run(fn, *args, **kwargs)

    def close(self) -> None:
        """Stop the threads (the pools are closed by whoever opened them)."""
        self.write.close()
        if self._read is not self.write:
            self._read.close()
        if self.replicas is not None:
            self.replicas.stop()
