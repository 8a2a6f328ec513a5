"""Least privilege: the server logs in as a role that cannot become more than the app role.

The server's connections (``make_pool``, as the server builds it) log in as
``jointgrid_server``: no superuser, no table of its own, no CREATE. Even after ``RESET ROLE``
it may not create, alter or drop anything, nor rewrite the audit trail. Every table must be
granted to it, including those later migrations add.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as pgerr
from psycopg import sql as q

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def server_conn(live_client: Any) -> Iterator[psycopg.Connection[Any]]:
    """A connection from the server's own pool, back to its login with RESET ROLE."""
    with live_client.app.state.pool.connection() as c:
        c.execute("RESET ROLE")
        yield c
        c.execute("RESET ROLE")


def refused(conn: psycopg.Connection[Any], statement: str, params: Any = None) -> None:
    with pytest.raises(pgerr.InsufficientPrivilege), conn.transaction():
        conn.execute(statement, params)


def test_the_server_login_is_not_the_owner_and_holds_no_extra_rights(server_conn):
    from layers.roles import excess, privileges

    row = server_conn.execute(
        "SELECT session_user AS login, current_user AS now, r.rolsuper, r.rolcreaterole,"
        " r.rolcreatedb, r.rolbypassrls"
        " FROM pg_roles r WHERE r.rolname = session_user"
    ).fetchone()
    assert row["login"] == row["now"] == "jointgrid_server"
    assert not (
        row["rolsuper"] or row["rolcreaterole"] or row["rolcreatedb"] or row["rolbypassrls"]
    )
    privs = privileges(server_conn)
    assert excess(privs) == [] and privs["tables_owned"] == 0, privs


def test_after_reset_role_the_server_may_not_create_alter_drop_or_rewrite(server_conn, conn):
    case = conn.execute("SELECT id FROM incidents LIMIT 1").fetchone()
    refused(server_conn, "CREATE TABLE jg_should_not_exist (id int)")
    refused(server_conn, "CREATE SCHEMA jg_should_not_exist")
    refused(server_conn, "CREATE FUNCTION jg_nope() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    refused(server_conn, "ALTER TABLE incidents ADD COLUMN jg_nope int")
    refused(server_conn, "ALTER TABLE incident_events DISABLE TRIGGER incident_events_no_update")
    refused(server_conn, "DROP TABLE incident_events")
    refused(server_conn, "TRUNCATE incidents CASCADE")
    refused(server_conn, "CREATE ROLE jg_nope")
    owner = conn.execute("SELECT current_user AS u").fetchone()["u"]
    refused(server_conn, q.SQL("SET ROLE {}").format(q.Identifier(owner)).as_string(server_conn))
    with pytest.raises(pgerr.InsufficientPrivilege):  # autocommit: not in a transaction
        server_conn.execute("CREATE DATABASE jg_should_not_exist")
    if case is not None:
        refused(
            server_conn,
            "UPDATE incident_events SET note = 'x' WHERE incident_id = %s",
            (case["id"],),
        )
        refused(server_conn, "DELETE FROM incident_events WHERE incident_id = %s", (case["id"],))
    refused(server_conn, "DELETE FROM schema_migrations")
    # what it needs still works
    assert server_conn.execute("SELECT count(*) AS n FROM incidents").fetchone()["n"] >= 0


def test_every_table_is_granted_to_the_server_login(server_conn):
    """A table a migration adds without grants would fail here (ALTER DEFAULT PRIVILEGES)."""
    missing = server_conn.execute(
        "SELECT c.relname FROM pg_class c"
        " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')"
        " AND c.relname NOT IN ('spatial_ref_sys', 'geometry_columns', 'geography_columns')"
        " AND NOT has_table_privilege(session_user, c.oid, 'SELECT')"
    ).fetchall()
    assert missing == []


def test_a_migrator_without_createrole_is_told_what_to_grant(conn):
    from layers.roles import RoleSetupRefused, ensure_login_role

    weak = f"jg_weak_{uuid.uuid4().hex[:8]}"
    conn.execute(q.SQL("CREATE ROLE {} NOLOGIN").format(q.Identifier(weak)))  # rolled back
    conn.execute(q.SQL("SET LOCAL ROLE {}").format(q.Identifier(weak)))
    with pytest.raises(RoleSetupRefused) as err:
        ensure_login_role(conn, user=f"{weak}_server", password="x")
    text = str(err.value)
    assert f'ALTER ROLE "{weak}" CREATEROLE;' in text
    assert f"CREATE ROLE {weak}_server LOGIN" in text and "JOINTGRID_DB_SERVER_URL" in text


def test_serve_refuses_to_start_when_the_url_user_cannot_make_the_login(db_url):
    weak = f"jg_weak_{uuid.uuid4().hex[:8]}"
    pw = uuid.uuid4().hex
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(
            q.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(q.Identifier(weak), q.Literal(pw))
        )
        try:
            url = psycopg.conninfo.make_conninfo(db_url, user=weak, password=pw)
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "JOINTGRID_DB_SERVER_USER": f"{weak}_server",
            }
            env.pop("JOINTGRID_DB_SERVER_URL", None)
            out = subprocess.run(
                [sys.executable, "-m", "api.cli", "serve", "--port", "9"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            admin.execute(q.SQL("DROP ROLE IF EXISTS {}").format(q.Identifier(f"{weak}_server")))
            admin.execute(q.SQL("DROP ROLE {}").format(q.Identifier(weak)))
    assert out.returncode == 2, out.stdout + out.stderr
    assert f'ALTER ROLE "{weak}" CREATEROLE;' in out.stderr and "Traceback" not in out.stderr
    assert "Uvicorn running" not in out.stderr


def test_serve_refuses_a_given_login_with_too_many_rights(db_url):
    """JOINTGRID_DB_SERVER_URL naming the owner (a superuser here) is refused."""
    env = {**os.environ, "DATABASE_URL": db_url, "JOINTGRID_DB_SERVER_URL": db_url}
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--port", "9"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "holds more than the server needs" in out.stderr
