"""A tiny ASGI app for comparing HTTP servers (bench/stalled.py): no database, no framework.

``/`` reads the whole body and answers ``ok <bytes read>``; ``/stream`` sends 12 chunks one
second apart (a long streaming answer to a client that sends nothing while it reads).
"""

from __future__ import annotations

import asyncio
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(12):
            await send({"type": "http.response.body", "body": b"%d\n" % i, "more_body": True})
            await asyncio.sleep(1.0)
        await send({"type": "http.response.body", "body": b"end\n"})
        return
    n, more = 0, True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return
        n += len(msg.get("body", b""))
        more = msg.get("more_body", False)
    body = b"ok %d" % n
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
