"""The server's login role: made and checked by the migrator, so the server holds no more than it needs.

Two logins share a database. The migrator (``DATABASE_URL``, or the private cluster's owner)
owns the tables and applies the migrations. The server logs in as its own role (default
``jointgrid_server``): a member of ``jointgrid_app`` (migration 0005), which holds the grants
the server needs, and nothing else: no superuser, no CREATEDB or CREATEROLE, no table of its
own, no CREATE in the schema or the database. ``RESET ROLE`` on a server connection gives back
only that.

Grants on tables added later: ``ALTER DEFAULT PRIVILEGES`` (0005), which :func:`default_grants`
re-asserts for whoever migrates at the start and end of every migrate, so a table any later
migration creates is granted to ``jointgrid_app`` the moment it exists, and a migration that
revokes something from it (as 0005 does for the audit trail) keeps that revocation. A blanket
grant function run after every migrate would have undone such revocations.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pgerr
from psycopg import sql as q
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import tuple_row

APP_ROLE = "jointgrid_app"


class RoleSetupRefused(Exception):
    """The migrator may not create or update the server's login role; the message says what to grant."""


def conninfo_as(url: str, user: str, password: str) -> str:
    """The same server and database as ``url``, logging in as ``user``."""
    params = conninfo_to_dict(url)
    params.update(user=user, password=password)
    return make_conninfo(**params)  # type: ignore[arg-type]


def default_grants(conn: psycopg.Connection[Any]) -> None:
    """Tables and sequences the current user creates in ``public`` are granted to the app role.

    Idempotent; does nothing before migration 0005 has made the role.
    """
    conn.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jointgrid_app') THEN
                ALTER DEFAULT PRIVILEGES IN SCHEMA public
                    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO jointgrid_app;
                ALTER DEFAULT PRIVILEGES IN SCHEMA public
                    GRANT USAGE, SELECT ON SEQUENCES TO jointgrid_app;
            END IF;
        END;
        $$
        """
    )


def _refusal(migrator: str, server_user: str, db: str, step: str, reason: str) -> str:
    return (
        f'the database user "{migrator}" may not {step} (PostgreSQL said: {reason}).\n'
        "Either give it the right, as a superuser:\n"
        f'  ALTER ROLE "{migrator}" CREATEROLE;\n'
        f'  GRANT {APP_ROLE} TO "{migrator}" WITH ADMIN OPTION;\n'
        "then run `jointgrid migrate` again; or make the server's login yourself:\n"
        f"  CREATE ROLE {server_user} LOGIN PASSWORD '<a new password>';\n"
        f"  GRANT {APP_ROLE} TO {server_user};\n"
        f'  GRANT CONNECT ON DATABASE "{db}" TO {server_user};\n'
        "and give it to JointGrid: "
        f"JOINTGRID_DB_SERVER_URL=postgresql://{server_user}:<password>@<host>:<port>/{db}"
    )


def ensure_login_role(conn: psycopg.Connection[Any], *, user: str, password: str) -> None:
    """Create the server's login role, or set its password, and make it a member of the app role.

    Runs as the migrator, in autocommit mode, after the migrations. Raises
    :class:`RoleSetupRefused` with the exact statements to run when the migrator lacks the
    right (CREATEROLE, and ADMIN on ``jointgrid_app``).
    """
    me, db = _one(conn, "SELECT current_user, current_database()")
    if user == me:
        raise RoleSetupRefused(
            f'the server login role "{user}" is the migrator itself; '
            "set JOINTGRID_DB_SERVER_USER to another name"
        )
    if _one(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (APP_ROLE,))[0] == 0:
        raise RoleSetupRefused(
            f"the role {APP_ROLE} does not exist: run `jointgrid migrate` first "
            f'(its migration 0005 makes it, which needs CREATEROLE for "{me}")'
        )
    role = q.Identifier(user)
    exists = _one(conn, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (user,))[0] > 0
    # New roles default to NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    # an existing one is checked by `privileges` rather than altered (only a superuser may
    # touch those attributes).
    stmt = (
        "ALTER ROLE {} WITH LOGIN INHERIT PASSWORD {}"
        if exists
        else ("CREATE ROLE {} WITH LOGIN INHERIT PASSWORD {}")
    )
    step = f'{"update" if exists else "create"} the server\'s login role "{user}"'
    try:
        with conn.transaction():
            conn.execute(q.SQL(stmt).format(role, q.Literal(password)))
    except pgerr.InsufficientPrivilege as exc:
        raise RoleSetupRefused(_refusal(me, user, db, step, _first_line(exc))) from exc
    member = _one(
        conn,
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = %s AND u.rolname = %s",
        (APP_ROLE, user),
    )[0]
    if not member:
        try:
            with conn.transaction():
                conn.execute(q.SQL("GRANT {} TO {}").format(q.Identifier(APP_ROLE), role))
        except pgerr.InsufficientPrivilege as exc:
            step = f'grant {APP_ROLE} to "{user}"'
            raise RoleSetupRefused(_refusal(me, user, db, step, _first_line(exc))) from exc
    try:
        with conn.transaction():
            conn.execute(q.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(q.Identifier(db), role))
    except pgerr.InsufficientPrivilege:
        pass  # not the database's owner: PUBLIC's CONNECT (the default) lets it in; checked below


def privileges(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """What the session's login may do beyond the app role's grants (all false for the server)."""
    row = _one(
        conn,
        """
        SELECT r.rolname AS login, r.rolsuper AS superuser, r.rolcreaterole AS createrole,
               r.rolcreatedb AS createdb, r.rolreplication AS replication,
               r.rolbypassrls AS bypassrls,
               has_schema_privilege(session_user, 'public', 'CREATE') AS create_in_schema,
               has_database_privilege(session_user, current_database(), 'CREATE')
                   AS create_in_database,
               (SELECT count(*) FROM pg_class c
                 WHERE c.relnamespace = 'public'::regnamespace
                   AND pg_has_role(session_user, c.relowner, 'USAGE')) AS tables_owned
        FROM pg_roles r WHERE r.rolname = session_user
        """,
    )
    return dict(zip(_PRIV_KEYS, row, strict=True))


_PRIV_KEYS = (
    "login",
    "superuser",
    "createrole",
    "createdb",
    "replication",
    "bypassrls",
    "create_in_schema",
    "create_in_database",
    "tables_owned",
)


def excess(privs: dict[str, Any]) -> list[str]:
    """The rights in ``privs`` that the server's login must not hold (empty when it is clean)."""
    out = [k for k in _PRIV_KEYS[1:-1] if privs.get(k)]
    if privs.get("tables_owned"):
        out.append(f"owns {privs['tables_owned']} table(s)")
    return out


def _one(
    conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()
) -> tuple[Any, ...]:
    """One row as a tuple, whatever the connection's row factory."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(query, params).fetchone()
    assert row is not None
    return row


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]
