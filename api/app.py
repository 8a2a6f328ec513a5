"""The FastAPI application: created by ``create_app()``, with its pool, catalogue and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from api import cursors, settings
from api.catalogue import load_catalogue
from api.errors import LastResort, add_exception_handlers
from api.limits import RULES, BodyLimit, BodyRule, JsonBodies
from api.security import SecurityHeaders
from layers.db import Database
from layers.pools import ServerPool, server_pool, work_as_app_role

log = logging.getLogger("jointgrid")


def make_database(db: settings.DatabaseSettings, pool: ServerPool) -> Database:
    """The server's ``Database`` on ``pool``; on a URL naming several hosts (a replicated
    cluster), with a read pool on each host and the check that keeps only fresh standbys in
    use (``layers.replicas``)."""
    from layers.db import Source
    from layers.replicas import Node, Replicas, hosts_of, one_host

    write = Source(pool, wait_s=db.connect_timeout_s)
    try:
        hosts = hosts_of(db.server_conninfo())
    except (SystemExit, ValueError):  # no URL yet: the write pool says so on first use
        hosts = []
    if len(hosts) < 2:
        return Database(write)
    nodes = []
    for host, port in hosts:

        def conninfo(host: str = host, port: str = port) -> str:
            return one_host(db.server_conninfo(), host, port)

        read_pool = make_pool(db, conninfo=conninfo, name=f"read-{port}")
        nodes.append(Node(host, port, Source(read_pool, wait_s=db.connect_timeout_s)))
    replicas = Replicas(
        nodes,
        conninfo=db.server_conninfo,
        max_lag_s=db.read_max_lag_s,
        max_lag_bytes=db.read_max_lag_bytes,
        interval_s=db.read_check_interval_s,
    )
    replicas.start()
    return Database(write, replicas=replicas)


def make_pool(
    db: settings.DatabaseSettings,
    *,
    open_now: bool = True,
    conninfo: Callable[[], str] | None = None,
    name: str = "jointgrid",
) -> ServerPool:
    """The server's connection pool, as the settings size it (``layers.pools``); ``conninfo``
    and ``name`` for a read pool on one host of a replicated cluster."""
    return server_pool(
        conninfo or db.server_conninfo,
        min_size=db.pool_min,
        max_size=db.pool_max,
        connect_timeout_s=db.connect_timeout_s,
        statement_timeout_ms=db.statement_timeout_ms,
        open_now=open_now,
        name=name,
    )


async def _escalation_loop(app: FastAPI, interval_s: float) -> None:
    """Escalate overdue cases every ``interval_s`` seconds; a database outage only delays it."""
    from api.usecases.cases import escalate_overdue

    while True:
        await asyncio.sleep(interval_s)
        try:
            n = await app.state.database.run(escalate_overdue, app.state.catalogue)
            if n:
                log.info("escalated %d overdue case(s)", n)
        except Exception:  # keep the loop alive through outages; the next pass retries
            log.warning("the overdue escalation pass failed; retrying later", exc_info=True)


def media_body_rule(service: settings.ServiceSettings) -> BodyRule:
    """Photo uploads may carry a case's full count of photos at the largest size, plus the
    report's JSON (and the multipart framing); a JSON report keeps the default limit, checked
    where its body is read (``api.usecases.media``)."""
    m = settings.media()
    return BodyRule(
        ("POST",),
        r"/api/v1/incidents(/[^/]+/media)?",
        m.max_count * m.max_bytes + service.max_body_bytes + 64 * 1024,
    )


async def _checkpoint_loop(app: FastAPI, interval_s: float) -> None:
    """Sign a checkpoint of the audit trail every ``interval_s`` seconds (api/usecases/trail.py)."""
    from api.usecases.trail import load_key, make_checkpoint

    audit = settings.AuditSettings()

    while True:
        await asyncio.sleep(interval_s)
        try:
            made = await app.state.database.run(
                make_checkpoint,
                load_key(audit.key_file),
                folder=audit.checkpoint_dir,
                side=audit.side,
            )
            if made is not None:
                log.info(
                    "audit checkpoint #%d: %d case(s), root %s", made.seq, made.cases, made.root
                )
        except Exception:  # keep the loop alive through outages; the next pass retries
            log.warning("the audit checkpoint failed; retrying later", exc_info=True)


def _start_worker(
    name: str, run: Callable[..., None], conninfo: Callable[[], str], **kwargs: Any
) -> Callable[[], None]:
    """``run(connect, stop=..., **kwargs)`` as a thread of the server, on connections of its
    own (the server's least-privileged login, in autocommit, found again after the database
    moves); returns what stops it."""
    import threading

    from layers.db import connect

    stop = threading.Event()

    def connect_() -> Any:
        conn = connect(conninfo(), autocommit=True)
        work_as_app_role(conn)
        return conn

    thread = threading.Thread(
        target=run, args=(connect_,), kwargs={"stop": stop, **kwargs}, name=name, daemon=True
    )
    thread.start()

    def finish() -> None:
        stop.set()
        thread.join(timeout=15)

    return finish


def _start_delivery(app: FastAPI, conninfo: Callable[[], str], idle_s: float) -> Any:
    """The delivery worker as a thread of the server (``make run``), on a connection of its
    own: a round holds its transaction while it sends, which must not take a pool slot."""
    from api.usecases.deliver import from_settings

    worker = from_settings(app.state.catalogue)
    stop = _start_worker("deliver", worker.run, conninfo, idle_s=idle_s)

    def finish() -> None:
        stop()
        worker.close()

    return finish


def _start_patrol_worker(conninfo: Callable[[], str], interval_s: float) -> Any:
    """The patrol worker as a thread of the server: it applies the sessions and the cells
    after the answers (api.usecases.positions.apply_backlog_until)."""
    from api.usecases.positions import apply_backlog_until

    gap_s = settings.patrol().session_gap_s
    return _start_worker(
        "patrol-apply", apply_backlog_until, conninfo, gap_s=gap_s, interval_s=interval_s
    )


def _start_media_finisher(app: FastAPI) -> Any:
    """The threads that decode uploaded photos after their answer and make their copies
    (api.usecases.media.Finisher), recording each outcome on a short-lived pool connection."""
    from api.usecases import media

    limits = settings.media()
    return media.Finisher(
        lambda: app.state.pool.connection(timeout=30),
        media.stores(limits.dir),
        limits,
        threads=limits.finish_threads,
        sweep_s=limits.sweep_s,
    ).start()


def create_app(pool: ServerPool | None = None, *, database: Database | None = None) -> FastAPI:
    """Build the app. Tests pass their own pool (or a whole ``Database``); the server makes
    one from ``DATABASE_URL`` when it starts.

    Every connection is taken through ``app.state.database`` (``layers.db.Database``);
    ``app.state.pool`` is its write pool.
    """
    db = settings.database()
    catalogue = load_catalogue(settings.data().catalogue)
    own_pool = pool is None and database is None

    service = settings.ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if own_pool:
            app.state.pool = make_pool(db)
            app.state.database = await asyncio.to_thread(make_database, db, app.state.pool)
        from api.access import start_revocation_listener

        stop_listening = start_revocation_listener(app)
        tasks = []
        if service.escalation_interval_s > 0:
            tasks.append(asyncio.create_task(_escalation_loop(app, service.escalation_interval_s)))
        checkpoint_s = settings.AuditSettings().checkpoint_interval_s
        if checkpoint_s > 0:
            tasks.append(asyncio.create_task(_checkpoint_loop(app, checkpoint_s)))
        push = settings.push()
        stop_delivery = None
        if own_pool and push.interval_s > 0 and db.url:
            stop_delivery = _start_delivery(app, db.server_conninfo, push.interval_s)
        if own_pool:
            app.state.media_finisher = _start_media_finisher(app)
        stop_patrols = None
        patrol_s = settings.patrol().apply_interval_s
        if own_pool and patrol_s > 0 and db.url:
            stop_patrols = _start_patrol_worker(db.server_conninfo, patrol_s)
        try:
            yield
        finally:
            finisher = getattr(app.state, "media_finisher", None)
            if finisher is not None:
                await asyncio.to_thread(finisher.stop)
            if stop_delivery is not None:
                await asyncio.to_thread(stop_delivery)
            if stop_patrols is not None:
                await asyncio.to_thread(stop_patrols)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            stop_listening()
            app.state.database.close()
            if own_pool:
                app.state.pool.close()

    app = FastAPI(
        title="JointGrid",
        version="1.0.0",
        summary="Grid governance across the Anju (Sichuan) - Tongnan (Chongqing) border",
        lifespan=lifespan,
        # /docs is served below from this server's own copy of Swagger UI, under the CSP;
        # FastAPI's own pages load it from a CDN with an inline script.
        docs_url=None,
        redoc_url=None,
    )
    app.state.pool = pool if database is None else database.write.pool
    app.state.pool_timeout = db.connect_timeout_s
    if database is None and pool is not None:
        database = Database.from_pools(pool, wait_s=db.connect_timeout_s)
    app.state.database = database
    app.state.catalogue = catalogue
    app.state.public_feeds = service.public_feeds
    app.state.max_body_bytes = service.max_body_bytes
    app.state.access = settings.AccessSettings()
    add_exception_handlers(app)
    cursors.secret()  # made (and kept in var/) on first start, not on the first page asked
    # Added innermost first: LastResort wraps everything, BodyLimit counts what JsonBodies reads.
    app.add_middleware(JsonBodies)
    rules = [BodyRule(tuple(r.methods), r.path, r.max_bytes) for r in service.body_limits]
    app.add_middleware(
        BodyLimit,
        max_bytes=service.max_body_bytes,
        rules=[*rules, media_body_rule(service), *RULES],
    )
    # Outside the body limit, so that its refusals carry the headers too.
    app.add_middleware(SecurityHeaders, tiles_url=settings.MapSettings().tiles_url)
    app.add_middleware(LastResort)

    from api.routes import catalogue as catalogue_routes
    from api.routes import (
        health,
        incidents,
        locate,
        media,
        ogc,
        open311,
        pages,
        positions,
        webhooks,
    )

    for routes in (health, locate, incidents, catalogue_routes, media, webhooks):
        app.include_router(routes.router)
    positions.install(app)
    ogc.install(app)
    open311.install(app)
    pages.install(app)
    _install_docs(app)
    return app


def _install_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from ``/assets`` (scripts/assets.sh), its start-up script carrying
    the response's CSP nonce."""
    from api.access import allow
    from api.security import add_nonce, nonce_of

    @app.get("/docs", include_in_schema=False, dependencies=[allow(anyone=True)])
    def docs(request: Request) -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/assets/swagger-ui-dist/swagger-ui-bundle.js",
            swagger_css_url="/assets/swagger-ui-dist/swagger-ui.css",
            swagger_favicon_url="data:,",
            swagger_ui_parameters={"validatorUrl": None},
        )
        # FastAPI's template, with our constants only: safe to put the nonce on its tags.
        return HTMLResponse(add_nonce(bytes(page.body).decode(), nonce_of(request)))
