"""What the command line's modules share: printing, failing with a message, the database."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from api import settings
from gis.errors import DomainError
from layers.db import Conn, DriverError, connect

T = TypeVar("T")


def _out(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def _fail(exc: DomainError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    if exc.detail:
        detail = exc.detail
        if isinstance(detail, dict) and "rejected" in detail:
            for r in detail["rejected"]:
                click.echo(f"  row {r['row']} ({r['code'] or 'no code'}): {r['reason']}", err=True)
        else:
            click.echo(json.dumps(detail, ensure_ascii=False, indent=2, default=str), err=True)
    sys.exit(2)


class _Group(click.Group):
    """Turns domain errors into a clear message and exit status 2: never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DomainError as exc:
            _fail(exc)
        except DriverError as exc:
            click.echo(f"database error: {str(exc).strip().splitlines()[0]}", err=True)
            sys.exit(2)


def _conn():
    return connect(settings.database().require_url(), connect_timeout=10)


def _autocommit(fn: Callable[[Conn], T]) -> T:
    """``fn`` on a connection of its own in autocommit: one statement, one command."""
    with _conn() as conn:
        conn.autocommit = True
        return fn(conn)


def _state(row: Mapping[str, Any]) -> str:
    """A key's or a device's state in a listing: ``live`` or ``revoked 2026-12-01``."""
    return f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else "live"
