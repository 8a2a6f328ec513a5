"""Request-size limit as plain ASGI middleware: a body over the limit is refused with 413."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from starlette.exceptions import HTTPException

Scope = dict[str, Any]


class BodyLimit:
    """Refuse request bodies larger than ``max_bytes`` (by Content-Length, or while streaming).

    ``rules`` are ``(methods, path regex, max_bytes)``: the first that matches a request sets
    its limit instead of the default.
    """

    def __init__(
        self,
        app: Any,
        max_bytes: int,
        rules: Sequence[tuple[frozenset[str], str, int]] = (),
    ) -> None:
        self.app = app
        self.default = max_bytes
        self.rules = [(m, re.compile(p), n) for m, p, n in rules]

    def limit_for(self, method: str, path: str) -> int:
        for methods, pattern, n in self.rules:
            if method in methods and pattern.fullmatch(path):
                return n
        return self.default

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope.get("method", ""), scope.get("path", ""))
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > max_bytes
            except ValueError:
                too_big = False
            if too_big:
                await self._refuse(send, max_bytes)
                return
        seen = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    # FastAPI passes HTTPException through its body parsing untouched.
                    raise HTTPException(413, f"the request body is larger than {max_bytes:,} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send: Any, max_bytes: int) -> None:
        body = json.dumps(
            {
                "code": "payload_too_large",
                "message": f"the request body is larger than {max_bytes:,} bytes",
                "detail": {"max_bytes": max_bytes},
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
