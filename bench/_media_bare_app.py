"""The anchor of bench/media.py: the same uvicorn + FastAPI + python-multipart stack, with an
endpoint that takes one photo part, hashes it and writes it durably (the same FileStore as
JointGrid's originals), nothing else.

Run as ``uvicorn bench._media_bare_app:create_app --factory`` with JOINTGRID_BENCH_BARE_DIR set.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from layers.blobstore import FileStore


def create_app() -> FastAPI:
    store = FileStore(Path(os.environ["JOINTGRID_BENCH_BARE_DIR"]))
    app = FastAPI()

    @app.post("/upload", status_code=201)
    async def upload(request: Request) -> JSONResponse:
        form = await request.form(max_part_size=16 << 20)
        part = form.get("media")
        assert isinstance(part, UploadFile)
        data = await part.read()

        def write() -> str:
            sha = hashlib.sha256(data).hexdigest()
            store.put(sha, data)
            return sha

        sha = await anyio.to_thread.run_sync(write)
        await form.close()
        return JSONResponse({"sha256": sha}, status_code=201)

    return app
