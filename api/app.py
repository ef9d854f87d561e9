"""FastAPI application: ``create_app(settings)``; models and index load once in the lifespan.

Run: ``rag serve --index DIR`` (uvicorn on 127.0.0.1:8000).
"""

from __future__ import annotations

import hmac
import json
import logging
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from api.engine import Engine, ready_info
from api.schemas import (
    AskRequest,
    AskResponse,
    CitationOut,
    DocumentList,
    DocumentOut,
    DocumentsIn,
    ErrorOut,
    Health,
    IngestOut,
    Ready,
    SearchRequest,
    SearchResponse,
)
from rag.cli import hit_to_dict
from rag.config import Settings, get_settings
from rag.errors import InvalidRequestError, RagError
from rag.types import Document, Filters

log = logging.getLogger("rag.api")
ERRORS = {401: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}}


class Metrics:
    """Prometheus metrics on a registry of the app's own (several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rag_requests_total", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("rag_request_seconds", "HTTP request latency", ["endpoint"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.stage = Histogram("rag_stage_seconds", "Latency per pipeline stage", ["stage"], registry=self.registry,
                               buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.refusals = Counter("rag_refusals_total", "Refused questions", ["reason"], registry=self.registry)


def _error(status: int, error: str, detail=None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "detail": detail})


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. ``settings`` default to the environment (``RAG_*``)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine.load()
        yield

    app = FastAPI(title="rag-service", version="0.1.0", lifespan=lifespan,
                  description="Hybrid retrieval (BM25 + FAISS) and grounded question answering.")
    app.state.engine = Engine(settings)
    app.state.metrics = Metrics()
    app.state.settings = settings
    max_body = int(settings.max_body_mb * 1e6)
    keys = settings.api_key_list()

    @app.middleware("http")
    async def observe(request: Request, call_next):
        """Request id, body limit, one structured log line, metrics. No bodies or keys in logs."""
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        t = time.perf_counter()
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_body:
            response = _error(413, "request body too large", f"limit is {settings.max_body_mb:g} MB")
        else:
            try:
                response = await call_next(request)
            except Exception:  # never a stack trace to the client
                log.exception("unhandled error (request %s)", rid)
                response = _error(500, "internal error", f"request id {rid}")
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        seconds = time.perf_counter() - t
        metrics: Metrics = app.state.metrics
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(seconds)
        response.headers["x-request-id"] = rid
        log.info(json.dumps({"request_id": rid, "method": request.method, "endpoint": endpoint,
                             "status": response.status_code, "ms": round(seconds * 1000, 1),
                             **getattr(request.state, "log_extra", {})}))
        return response

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError):
        return _error(exc.http_status, exc.__class__.__name__, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        detail = [{"field": ".".join(str(p) for p in e["loc"][1:]) or "body", "message": e["msg"]}
                  for e in exc.errors()]
        return _error(422, "invalid request", detail)

    def auth(request: Request) -> None:
        if not keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        ok = scheme.lower() == "bearer" and any(hmac.compare_digest(token.encode(), k.encode()) for k in keys)
        if not ok:
            raise Unauthorized()

    class Unauthorized(RagError):
        http_status = 401

        def __str__(self) -> str:
            return "missing or invalid API key (Authorization: Bearer KEY)"

    def engine() -> Engine:
        return app.state.engine

    @app.get("/healthz", response_model=Health, tags=["ops"])
    def healthz() -> Health:
        """The process is alive (no auth, no index needed)."""
        return Health()

    @app.get("/readyz", response_model=Ready, responses={503: {"model": Ready}}, tags=["ops"],
             dependencies=[Depends(auth)])
    def readyz(eng: Engine = Depends(engine)):
        """Index loaded? With counts, models and whether a reranker is active; 503 when not ready."""
        info = ready_info(eng)
        return JSONResponse(status_code=200 if info["ready"] else 503, content=Ready(**info).model_dump())

    @app.get("/metrics", tags=["ops"], dependencies=[Depends(auth)])
    def metrics() -> Response:
        """Prometheus text format: request counts, latency per endpoint and per stage, refusals."""
        return Response(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/search", response_model=SearchResponse, responses=ERRORS, tags=["retrieval"],
              dependencies=[Depends(auth)])
    def search(req: SearchRequest, eng: Engine = Depends(engine)) -> SearchResponse:
        """Retrieval only: the same hits as `rag search --json`."""
        retriever = eng.current()
        f = req.filters
        filters = Filters(tuple(f.doc_id), f.source, tuple(f.metadata.items())) if f else None
        res = retriever.search(req.query, k=req.top_k, mode=req.mode, rerank=req.rerank, filters=filters)
        for stage, ms in res.timings_ms.items():
            if stage != "total":
                app.state.metrics.stage.labels(stage).observe(ms / 1000)
        return SearchResponse(mode=res.mode, reranked=res.reranked, dense_used=res.dense_used,
                              query_lang=res.query_lang, candidates=res.n_candidates, timings_ms=res.timings_ms,
                              hits=[hit_to_dict(h) for h in res.hits], index_version=retriever.index.version)

    def _params(req: AskRequest):
        from rag.generate import GenParams

        return GenParams(temperature=settings.temperature if req.temperature is None else req.temperature,
                         top_p=settings.top_p if req.top_p is None else req.top_p,
                         max_tokens=settings.max_tokens if req.max_tokens is None else req.max_tokens,
                         seed=settings.seed)

    def _answer_out(answer, index_version: int) -> dict:
        cites = [CitationOut(n=c.n, doc_id=c.hit.chunk.doc_id, chunk_id=c.hit.chunk.chunk_id, title=c.hit.chunk.title,
                             source=c.hit.chunk.source, snippet=c.hit.chunk.text[:300], score=c.hit.score)
                 for c in answer.citations]
        return AskResponse(answer=answer.text, refused=answer.refused, refusal_reason=answer.refusal_reason,
                           citations=cites, timings_ms=answer.timings_ms, model=answer.model,
                           index_version=index_version).model_dump()

    def _observe_answer(request: Request, answer) -> None:
        m: Metrics = app.state.metrics
        for stage in ("retrieve", "rerank", "generate"):
            if answer.timings_ms.get(stage):
                m.stage.labels(stage).observe(answer.timings_ms[stage] / 1000)
        if answer.refused:
            m.refusals.labels("gate" if answer.timings_ms.get("generate", 0) == 0 else "model").inc()
        request.state.log_extra = {"refused": answer.refused, "timings_ms": answer.timings_ms}

    @app.post("/ask", response_model=AskResponse, tags=["answers"], dependencies=[Depends(auth)],
              responses={**ERRORS, 502: {"model": ErrorOut}, 504: {"model": ErrorOut},
                         200: {"content": {"text/event-stream": {}}}})
    async def ask(req: AskRequest, request: Request, eng: Engine = Depends(engine)):
        """Answer from the retrieved passages with `[n]` citations, or refuse (`refused: true`) when
        retrieval finds nothing relevant or the passages do not hold the answer. With `stream: true`
        (or `Accept: text/event-stream`): SSE `delta` events, then one `answer` event."""
        import threading

        from sse_starlette.sse import EventSourceResponse
        from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

        pipeline = eng.pipeline()
        version = pipeline.retriever.index.version
        f = req.filters
        filters = Filters(tuple(f.doc_id), f.source, tuple(f.metadata.items())) if f else None
        params = _params(req)
        wants_stream = req.stream or "text/event-stream" in request.headers.get("accept", "")
        if not wants_stream:
            answer = await run_in_threadpool(pipeline.answer, req.question, req.top_k, filters, params)
            _observe_answer(request, answer)
            return _answer_out(answer, version)

        cancel = threading.Event()
        # Retrieval runs before the response starts, so that its errors are proper HTTP errors.
        prepared = await run_in_threadpool(pipeline.prepare, req.question, req.top_k, filters, params.max_tokens)

        async def events():
            it = pipeline.stream(req.question, req.top_k, filters, params, cancel, prepared=prepared)
            try:
                async for kind, value in iterate_in_threadpool(it):
                    if await request.is_disconnected():
                        cancel.set()
                        return
                    if kind == "delta":
                        yield {"event": "delta", "data": json.dumps({"text": value}, ensure_ascii=False)}
                    else:
                        _observe_answer(request, value)
                        yield {"event": "answer", "data": json.dumps(_answer_out(value, version), ensure_ascii=False)}
            except RagError as exc:
                yield {"event": "error", "data": json.dumps({"error": exc.__class__.__name__, "detail": str(exc)})}
            finally:
                cancel.set()

        return EventSourceResponse(events(), ping=15)

    def _ingest(eng: Engine, documents: list[Document] | None = None, paths: list[Path] | None = None,
                delete: list[str] | None = None) -> IngestOut:
        from ingest.pipeline import ingest

        with eng.write_lock:
            emb = eng.embedder_for_ingest()
            if eng.retriever is None:
                emb = None  # a new index chooses its embedder (RAG_EMBEDDER)
            report = ingest(paths or [], eng.index_dir, eng.settings, documents=documents, delete=delete or [],
                            embedder=emb, progress=False)
            if report.committed:
                eng.reload()  # atomic swap: in-flight queries finish on the version they started with
        return IngestOut(index_version=report.version, committed=report.committed, added=report.added,
                         updated=report.updated, unchanged=report.unchanged, removed=report.removed,
                         chunks_total=report.chunks_total, seconds=round(report.seconds, 3),
                         skipped=[{"source": s.source, "reason": s.reason} for s in report.skipped])

    @app.post("/documents", response_model=IngestOut, responses=ERRORS, tags=["documents"],
              dependencies=[Depends(auth)],
              openapi_extra={"requestBody": {"content": {
                  "application/json": {"schema": DocumentsIn.model_json_schema()},
                  "multipart/form-data": {"schema": {"type": "object", "properties": {"files": {
                      "type": "array", "items": {"type": "string", "format": "binary"}}}}}}}})
    async def add_documents(request: Request, eng: Engine = Depends(engine)) -> IngestOut:
        """Add or update documents: JSON `{documents: [{id, text, title?, metadata?}]}` or multipart
        file uploads (`files`: .md .txt .html .pdf .jsonl). Same incremental ingest as the CLI; the
        live index is swapped atomically afterwards."""
        from starlette.concurrency import run_in_threadpool

        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            files = [f for f in form.getlist("files") if hasattr(f, "filename")]
            if not files:
                raise InvalidRequestError("multipart upload needs one or more 'files' parts")
            with tempfile.TemporaryDirectory() as tmp:
                for f in files:
                    name = Path(f.filename or "upload.txt").name
                    (Path(tmp) / name).write_bytes(await f.read())
                docs, skipped = _load_uploads(Path(tmp), int(settings.max_file_mb * 1e6))
                out = await run_in_threadpool(_ingest, eng, docs)
                out.skipped = skipped + out.skipped
                return out
        try:
            payload = DocumentsIn.model_validate_json(await request.body())
        except ValueError as exc:
            raise RequestValidationError(getattr(exc, "errors", lambda: [])()) from exc
        docs = [Document(doc_id=d.id, text=d.text, title=d.title, source=f"api:{d.id}", format="api",
                         metadata=dict(d.metadata)) for d in payload.documents]
        return await run_in_threadpool(_ingest, eng, docs)

    @app.delete("/documents/{doc_id:path}", response_model=IngestOut, responses=ERRORS, tags=["documents"],
                dependencies=[Depends(auth)])
    def delete_document(doc_id: str, eng: Engine = Depends(engine)) -> IngestOut:
        """Remove a document and its chunks (404 when the id is unknown)."""
        retriever = eng.current()
        if doc_id not in retriever.index.doc_hashes():
            return _error(404, "unknown document", doc_id)
        return _ingest(eng, delete=[doc_id])

    @app.get("/documents", response_model=DocumentList, responses=ERRORS, tags=["documents"],
             dependencies=[Depends(auth)])
    def list_documents(limit: int = 100, offset: int = 0, eng: Engine = Depends(engine)) -> DocumentList:
        """Documents in the live index, by id."""
        if not 1 <= limit <= 1000 or offset < 0:
            raise InvalidRequestError("limit must be 1..1000 and offset >= 0")
        index = eng.current().index
        docs = index.documents(limit=limit, offset=offset)
        return DocumentList(total=int(index.manifest["counts"]["documents"]),
                            documents=[DocumentOut(**d) for d in docs])

    return app


def _load_uploads(directory: Path, max_bytes: int) -> tuple[list[Document], list[dict[str, str]]]:
    """Uploaded files through the same loaders as the CLI; ids are the file names."""
    from dataclasses import replace

    from ingest.loaders import Skipped, iter_documents

    docs, skipped = [], []
    for item in iter_documents([directory], max_bytes):
        if isinstance(item, Skipped):
            skipped.append({"source": "upload:" + Path(item.source).name, "reason": item.reason})
        else:
            docs.append(replace(item, source="upload:" + Path(item.source).name))
    return docs, skipped
