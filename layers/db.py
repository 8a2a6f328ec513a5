"""Database access: connections, the one place that translates driver errors, SQL files, migrations.

Only ``layers/`` talks to PostgreSQL. Functions take the connection first so that callers see
and own the transaction.
"""

from __future__ import annotations

import functools
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

MIGRATION_LOCK = 7_311_001  # advisory lock key: one migrator at a time


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver errors into domain errors, so no caller needs to know psycopg.

    Connection failures become ``Unavailable`` (HTTP 503); constraint violations become
    ``Conflict`` or ``InvalidInput``; PostGIS geometry errors become ``InvalidGeometry``.
    """
    try:
        yield
    except (psycopg.OperationalError, pgerr.AdminShutdown, pgerr.CannotConnectNow) as exc:
        raise Unavailable(
            "the database is not reachable; retry shortly", {"reason": _first_line(exc)}
        ) from exc
    except pgerr.UniqueViolation as exc:
        raise Conflict("a record with this key already exists", _diag(exc)) from exc
    except pgerr.ForeignKeyViolation as exc:
        raise InvalidInput("a referenced record does not exist", _diag(exc)) from exc
    except (pgerr.CheckViolation, pgerr.NotNullViolation) as exc:
        raise InvalidInput("a value breaks a rule of the data model", _diag(exc)) from exc
    except psycopg.DataError as exc:
        # Values PostgreSQL cannot take: NUL bytes in text, numbers out of range, bad dates.
        raise InvalidInput(
            "a value cannot be stored or compared as given", {"reason": _first_line(exc)}
        ) from exc
    except pgerr.NoDataFound as exc:
        raise NotFound("no such record", {"reason": _first_line(exc)}) from exc
    except pgerr.InternalError as exc:
        # PostGIS reports geometry problems (e.g. a self-intersection GEOS cannot handle) as
        # XX000 with a message naming the geometry library.
        msg = _first_line(exc)
        if re.search(r"geos|geometry|lwgeom|ring", msg, re.I):
            raise InvalidGeometry("the geometry could not be processed", {"reason": msg}) from exc
        raise


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _diag(exc: psycopg.Error) -> dict[str, Any]:
    d = exc.diag
    return {
        "constraint": d.constraint_name,
        "table": d.table_name,
        "reason": d.message_detail or d.message_primary,
    }


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
