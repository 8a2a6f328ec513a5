"""Paging cursors: opaque, signed with a server secret, checked before anything is run.

A cursor is ``base64url(JSON list of strings) . base64url(HMAC-SHA256(secret, that))``
(the tag cut to 128 bits). A cursor that was changed, or made by another server, is refused
with ``invalid_cursor`` before its content is even parsed. The secret comes from
``JOINTGRID_CURSOR_SECRET`` or, failing that, from ``var/cursor.key``, made on first start
(mode 0600) so that cursors survive a restart.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

import orjson
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.settings import ROOT
from gis.errors import InvalidCursor

log = logging.getLogger("jointgrid")

TAG_BYTES = 16
MAX_CURSOR_CHARS = 2048


class CursorSettings(BaseSettings):
    """The secret that signs paging cursors (any string; 32 random bytes are made if unset)."""

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_", extra="ignore")

    cursor_secret: SecretStr | None = None
    cursor_key_file: Path = ROOT / "var" / "cursor.key"


def _read_or_make(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    try:
        os.link(tmp, path)  # atomic, and never replaces a key another server made first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


@functools.cache
def secret() -> bytes:
    """The signing secret, read (or made) once per process."""
    cfg = CursorSettings()
    if cfg.cursor_secret is not None and cfg.cursor_secret.get_secret_value():
        return cfg.cursor_secret.get_secret_value().encode()
    try:
        key = _read_or_make(cfg.cursor_key_file)
    except OSError as exc:
        # No writable var/: cursors still work, but only until this process ends.
        log.warning(
            "cannot keep the cursor key in %s (%s); using one for this process only",
            cfg.cursor_key_file,
            exc.strerror,
        )
        return secrets.token_bytes(32)
    if len(key) < 16:
        raise SystemExit(f"{cfg.cursor_key_file} holds too short a key; delete it to make one")
    return key


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(payload: str, key: bytes) -> bytes:
    return hmac.new(key, payload.encode(), hashlib.sha256).digest()[:TAG_BYTES]


def sign(values: tuple[str, ...] | list[str], *, key: bytes | None = None) -> str:
    """An opaque cursor carrying ``values`` (strings)."""
    payload = _b64(orjson.dumps(list(values)))
    return f"{payload}.{_b64(_tag(payload, key or secret()))}"


def _refuse() -> InvalidCursor:
    return InvalidCursor(
        "the cursor is not one this server made, or it was changed; follow the `next` link "
        "as given, or start again without a cursor",
        {"fix": "drop the cursor parameter to get the first page"},
    )


def open_(text: str, *, size: int, key: bytes | None = None) -> tuple[str, ...]:
    """The ``size`` strings a cursor from ``sign`` carries; ``InvalidCursor`` for any other."""
    if len(text) > MAX_CURSOR_CHARS or text.count(".") != 1:
        raise _refuse()
    payload, tag = text.split(".")
    try:
        given = _unb64(tag)
    except ValueError:
        raise _refuse() from None
    if not hmac.compare_digest(given, _tag(payload, key or secret())):
        raise _refuse()
    try:
        values = orjson.loads(_unb64(payload))
    except ValueError:  # only ever our own bytes by now; kept for a change of format
        raise _refuse() from None
    if (
        not isinstance(values, list)
        or len(values) != size
        or not all(isinstance(v, str) for v in values)
    ):
        raise _refuse()
    return tuple(values)
