"""SQL functions live in source files (layers/functions), once each, applied on every migrate."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql as q

from layers.db import connect, function_names, migrate, migration_needs
from tests.conftest import _server_url, _with_db

LAYERS = Path(__file__).resolve().parents[1] / "layers"
CREATE = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+)\s*\(", re.I | re.M)


def _code(text: str) -> str:
    """The text without its comment lines."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def test_each_function_is_defined_once_in_its_own_file():
    names = function_names()
    assert names, "no function files"
    for name in names:
        text = (LAYERS / "functions" / f"{name}.sql").read_text(encoding="utf-8")
        assert CREATE.findall(text) == [name], name
        assert re.search(rf"CREATE OR REPLACE FUNCTION {name}\(", text), f"{name} is not idempotent"
    for path in sorted((LAYERS / "migrations").glob("*.sql")):
        defined = CREATE.findall(path.read_text(encoding="utf-8"))
        assert not defined, f"{path.name} defines {defined}: functions belong in layers/functions"


def test_migrations_name_the_functions_they_use():
    names = function_names()
    for path in sorted((LAYERS / "migrations").glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        code = re.sub(r"DROP FUNCTION[^;]*;", "", _code(text), flags=re.I)
        used = {n for n in names if re.search(rf"\b{n}\s*\(", code)}
        assert used <= set(migration_needs(text)), f"{path.name} uses {used} without -- needs:"


@pytest.fixture()
def empty_db() -> str:
    server = _server_url()
    name = f"jointgrid_fn_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_with_db(server, "postgres"), autocommit=True) as admin:
        admin.execute(q.SQL("CREATE DATABASE {}").format(q.Identifier(name)))
    try:
        yield _with_db(server, name)
    finally:
        with psycopg.connect(_with_db(server, "postgres"), autocommit=True) as admin:
            admin.execute(
                q.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(q.Identifier(name))
            )


def _definitions(conn: psycopg.Connection) -> dict[str, str]:
    rows = conn.execute(
        "SELECT p.proname AS name, pg_get_functiondef(p.oid) AS d FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
        " AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = p.oid AND e.deptype = 'e')"
    ).fetchall()
    return {r["name"]: r["d"] for r in rows}


def test_every_migrate_applies_the_function_files(empty_db):
    with connect(empty_db) as conn:
        conn.autocommit = True
        assert migrate(conn)
        first = _definitions(conn)
        assert sorted(first) == function_names()  # each once: no stale overload is left
        conn.execute(
            "CREATE OR REPLACE FUNCTION outbox_event_type(action text) RETURNS text"
            " LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'tampered' $$"
        )
        assert conn.execute("SELECT outbox_event_type('report') AS t").fetchone()["t"] == "tampered"
        assert migrate(conn) == []  # nothing numbered is left, and yet the functions are re-applied
        assert _definitions(conn) == first
        row = conn.execute("SELECT outbox_event_type('report') AS t").fetchone()
        assert row["t"] == "incident.reported"
