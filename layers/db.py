"""Database access: connections, the one place that translates driver errors, SQL files, migrations.

Only ``layers/`` talks to PostgreSQL. Functions take the connection first so that callers see
and own the transaction.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import psycopg
from psycopg import errors as pgerr
from psycopg.rows import dict_row

from gis.errors import Conflict, InvalidGeometry, InvalidInput, NotFound, Unavailable
from layers.roles import default_grants

Conn = psycopg.Connection[Any]

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

    Connection failures become ``Unavailable`` (HTTP 503); constraint violations become
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
    except (psycopg.OperationalError, pgerr.AdminShutdown, pgerr.CannotConnectNow) as exc:
        log.warning("database unavailable: %s", _first_line(exc))
        raise Unavailable(
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


def migrate(conn: Conn) -> list[str]:
    """Apply the numbered SQL files under ``layers/migrations`` not yet recorded; return them.

    Each file runs in its own transaction, and an advisory lock keeps two migrators apart.
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
            folder = resources.files("layers") / "migrations"
            for name in sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql")):
                version = name.split("_", 1)[0]
                if version in done:
                    continue
                text = (folder / name).read_text(encoding="utf-8")
                with conn.transaction():
                    conn.execute(text)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied.append(name)
            default_grants(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied


def postgis_version(conn: Conn) -> str:
    """The PostGIS library version, e.g. ``3.3.2``."""
    with translate_errors():
        row = conn.execute("SELECT postgis_lib_version() AS v").fetchone()
    return str(row["v"]) if row else ""


def pending_migrations(conn: Conn) -> list[str]:
    """The migration files not yet applied to this database (empty when up to date)."""
    folder = resources.files("layers") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
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
