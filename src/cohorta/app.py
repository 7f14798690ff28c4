"""The web application: API under /api/v1, OpenAPI docs, and the management UI under /ui."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine

from cohorta import __version__, bodies, problems
from cohorta.access.router import public_router as login_router
from cohorta.access.router import router as access_router
from cohorta.access.service import TokenCache
from cohorta.analytics.router import router as analytics_router
from cohorta.audit.router import router as audit_router
from cohorta.campaigns.router import eligibility_router
from cohorta.campaigns.router import router as campaigns_router
from cohorta.clock import Clock, SystemClock
from cohorta.clv.router import router as clv_router
from cohorta.config import Settings, get_settings
from cohorta.customers.router import customer_router
from cohorta.customers.router import router as customers_router
from cohorta.db import ReadAhead, WalCheckpointer, create_db_engine, make_session_factory
from cohorta.deps import reader
from cohorta.evaluation.router import router as rules_router
from cohorta.evaluation.store import warm_up
from cohorta.exports.router import router as exports_router
from cohorta.membership.live import SegmentIndex
from cohorta.membership.scheduler import Scheduler
from cohorta.segments.router import router as segments_router
from cohorta.sources.router import router as sources_router
from cohorta.ui.admin import router as ui_admin_router
from cohorta.ui.render import STATIC_DIR
from cohorta.ui.router import router as ui_router
from cohorta.ui.sources import router as ui_sources_router
from cohorta.webhooks.router import router as webhooks_router

API_PREFIX = "/api/v1"
# The collector's thresholds in a serving process (Python's are 700, 10, 10). A bulk request of 10,000 customers makes
# some 300,000 objects that live until its answer; at 700 allocations per young collection the collector ran a few
# hundred times per request and a full collection every few requests, about a third of the request's time
# (docs/benchmarks.md). Rarer young collections leave the full ones as they were: garbage cycles are still collected.
GC_THRESHOLDS = (10_000, 10, 10)


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, engine: Engine | None = None
) -> FastAPI:
    settings = settings or get_settings()
    engine = engine or create_db_engine(settings.database_url)
    logging.basicConfig(level=settings.log_level.upper())

    session_factory = make_session_factory(engine)
    clock = clock or SystemClock()
    segment_index = SegmentIndex()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        gc.set_threshold(*GC_THRESHOLDS)
        await anyio.to_thread.run_sync(warm_up)
        # SQLite: checkpoints of the WAL in a thread of their own, not in the requests whose commits fill it.
        checkpointer = WalCheckpointer(engine) if engine.dialect.name == "sqlite" else None
        if checkpointer is not None:
            checkpointer.start()
        # Bulk writes read their customers' rows ahead on connections of their own (db.ReadAhead).
        if settings.read_ahead_threads and ReadAhead.available(engine):
            app.state.read_ahead = ReadAhead(engine, settings.read_ahead_threads)
        scheduler = Scheduler(session_factory, clock, settings, segment_index) if settings.scheduler else None
        if scheduler is not None:
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            if checkpointer is not None:
                checkpointer.stop()
            if app.state.read_ahead is not None:
                app.state.read_ahead.close()
                app.state.read_ahead = None

    app = FastAPI(
        lifespan=lifespan,
        title="Cohorta",
        version=__version__,
        description="Customer segmentation engine for loyalty programs and commerce. "
        "Authenticate with `Authorization: Bearer <token>` (an API token or COHORTA_ADMIN_TOKEN), or with the session "
        "cookie of `POST /api/v1/auth/login` plus its CSRF token in `X-CSRF-Token` on writes. See docs/access.md.",
        docs_url="/docs",
        redoc_url="/redoc",
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # Bodies validated from their bytes (cohorta.bodies) are no body parameters: their schemas are added here.
        if app.openapi_schema is None:
            app.openapi_schema = bodies.add_schemas(default_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.clock = clock
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.segment_index = segment_index
    app.state.read_ahead = None  # started with the app (lifespan)
    app.state.token_cache = TokenCache(settings.token_cache_seconds)
    problems.install(app)
    app.add_middleware(problems.BodySizeLimit, max_bytes=settings.max_request_bytes)

    public = APIRouter(prefix=API_PREFIX)

    @public.get("/health", tags=["health"])
    def health() -> dict[str, Any]:
        from sqlalchemy import text

        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"status": "ok", "version": __version__, "database": engine.dialect.name}

    app.include_router(public)
    app.include_router(login_router, prefix=API_PREFIX)
    # Everything else needs a caller with at least the read permission; routes that write ask for more.
    for router in (
        access_router, customers_router, rules_router, analytics_router, segments_router, exports_router,
        campaigns_router,
        eligibility_router,
        webhooks_router, audit_router, clv_router, sources_router,
        customer_router,  # last: its /customers/{source_id:path} would otherwise take /customers/{id}/... paths
    ):  # fmt: skip
        app.include_router(router, prefix=API_PREFIX, dependencies=[Depends(reader)])

    # The management UI: pages under /ui (browser session), its assets (vendored, no build step) under /ui/static.
    app.include_router(ui_router)
    app.include_router(ui_admin_router)
    app.include_router(ui_sources_router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/segments")

    return app
