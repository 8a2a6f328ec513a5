"""Streaming a FeatureCollection from a leased connection, and the validators around it
(ETag, If-None-Match, Last-Modified)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import anyio
import orjson
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.routes.ogc.common import default
from layers.db import Lease


class FeatureStream(StreamingResponse):
    """Streams blocks made by a reader that stays up to READ_AHEAD blocks ahead of the socket,
    so PostgreSQL keeps producing while earlier blocks are sent. The reader runs on the
    database's threads (``Lease.submit``), and the lease (its connection and permit) goes back
    when the response ends, however it ends: a client that leaves mid-page gets its query
    cancelled and the connection closed, never reused."""

    READ_AHEAD = 4

    def __init__(self, lease: Lease, chunks: Iterator[bytes | memoryview], **kwargs: Any) -> None:
        self.lease = lease
        self._chunks = chunks
        self._stop = threading.Event()
        self._slots = threading.Semaphore(self.READ_AHEAD)
        self._reader: asyncio.Future[None] | None = None
        super().__init__(self._body(), **kwargs)

    async def _body(self) -> Any:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def read(_conn: Any) -> None:
            try:
                for chunk in self._chunks:
                    self._slots.acquire()
                    if self._stop.is_set():
                        return
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as exc:  # handed to the response, which ends the stream
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        self._reader = self.lease.submit(read)
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            self._slots.release()
            yield item

    async def _finish(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            self._stop.set()
            for _ in range(self.READ_AHEAD + 1):
                self._slots.release()
            self.lease.cancel()  # the reader stops at its next row
            await asyncio.wait([reader], timeout=30)
        if reader is None or reader.done():
            with contextlib.suppress(Exception):  # the lease deals with the connection anyway
                close = getattr(self._chunks, "close", None)
                if close is not None:
                    await self.lease.run(lambda _c: close())
        await self.lease.release()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish()


def etag(*parts: Any) -> str:
    digest = hashlib.sha256(orjson.dumps(parts, default=default)).hexdigest()[:32]
    return f'W/"{digest}"'


def matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == ours for t in header.split(","))


def http_date(t: datetime | None) -> dict[str, str]:
    if t is None:
        return {}
    return {"Last-Modified": format_datetime(t.astimezone(UTC), usegmt=True)}
