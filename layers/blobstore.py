"""Content-addressed storage for photo files, behind one small interface.

``BlobStore`` is all the rest of JointGrid knows: ``put``, ``get``, ``exists``. ``FileStore``
keeps each blob as a file named by its key under a folder (two levels of fan-out so that no
folder grows past a few thousand entries); an S3-compatible store can take its place by
implementing the same three methods (``put`` of an existing key must be a no-op there too).

A ``put`` returns only once the bytes are durable: they are written to a temporary file in
the target folder, fsynced, renamed over the final name (atomic on POSIX), and the folder is
fsynced so the rename itself survives a crash. A reader therefore sees the whole blob or none.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"^[0-9a-f]{64}(\.[a-z0-9]{1,16})*$")


class BlobStore(Protocol):
    """Where photo bytes live, by key (a SHA-256 in hex, optionally with a suffix)."""

    def put(self, key: str, data: bytes) -> bool:
        """Store ``data`` under ``key`` durably; False when the key was already there."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``KeyError`` when there are none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        ...


class FileStore:
    """A ``BlobStore`` in a local folder (the default under ``./var/media``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """The file of ``key``; the key is checked so it can never name a path outside."""
        if not _KEY.match(key):
            raise ValueError(f"not a blob key: {key[:80]!r}")
        return self.root / key[:2] / key[2:4] / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def put(self, key: str, data: bytes) -> bool:
        final = self.path(key)
        if final.is_file():
            return False  # content-addressed: the same key holds the same bytes
        folder = final.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = folder / f".{key}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(folder)
        # The fan-out folders may be new too: their entries must survive as well.
        _fsync_dir(folder.parent)
        return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
