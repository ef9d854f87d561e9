"""FastAPI application: ``create_app(settings)`` assembles routers, middleware and error handlers;
models and the index load once, in the lifespan.

Run: ``rag serve --index DIR`` (uvicorn on 127.0.0.1:8000).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from pydantic.json_schema import models_json_schema

from api import errors, middleware
from api.deps import collection_path
from api.engine import gauges
from api.jobs import JobQueue
from api.limits import GenerationSlots, RateLimiter
from api.metrics import Metrics
from api.registry import Registry
from api.routes import ask, chat, collections, documents, jobs, ops, search
from api.schemas import DocumentsIn
from rag.config import Settings, get_settings


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = app.state.registry.settings
    app.state.registry.load()
    # Made here, inside the serving event loop, which their asyncio primitives belong to.
    app.state.slots = GenerationSlots(settings.max_concurrent_generations, settings.max_queued_generations,
                                      settings.generation_queue_timeout_s)
    app.state.jobs.start()
    yield
    app.state.jobs.stop(timeout=settings.shutdown_grace_s)
    app.state.registry.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. ``settings`` default to the environment (``RAG_*``)."""
    settings = settings or get_settings()
    app = FastAPI(title="rag-service", version="0.1.0", lifespan=lifespan,
                  description="Hybrid retrieval (BM25 + FAISS) and grounded question answering.")
    app.state.registry = Registry(settings)
    app.state.engine = app.state.registry.default
    app.state.metrics = Metrics()
    app.state.metrics.watch(gauges(app.state.engine))
    app.state.jobs = JobQueue(settings.max_queued_writes, settings.jobs_kept)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    errors.install(app)
    middleware.install(app, app.state.metrics, settings.max_body_mb)
    for module in (ops, collections, search, ask, chat, documents, jobs):
        app.include_router(module.router)
    # The same routes for any named collection: /collections/{collection}/search, .../v1/chat/completions, ...
    for module in (search, ask, chat, documents):
        app.include_router(module.router, prefix="/collections/{collection}", dependencies=[Depends(collection_path)])
    _document_body_schemas(app)
    if settings.ui:
        from api import ui  # Gradio is imported only when the UI is served

        app = ui.mount(app, app.state.registry)
    return app


def _document_body_schemas(app: FastAPI) -> None:
    """``POST /documents`` reads its body itself (JSON or multipart); publish the JSON body's schema
    under ``components`` so that its ``$ref`` resolves for clients and fuzzers."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            _, defs = models_json_schema([(DocumentsIn, "validation")], ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
