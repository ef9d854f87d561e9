"""Documents: add or update (JSON or file uploads), list, delete. Writes go through the same
incremental, atomic ingest as the CLI; the live index is swapped after each commit."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, SettingsDep, require_api_key
from api.engine import Engine
from api.errors import error_response
from api.schemas import ERRORS, DocumentList, DocumentOut, DocumentsIn, IngestOut
from api.uploads import load_uploads
from rag.errors import InvalidRequestError
from rag.types import Document

router = APIRouter(tags=["documents"], dependencies=[Depends(require_api_key)])

_BODY = {"requestBody": {"content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/DocumentsIn"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"files": {
        "type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


def _ingest_out(report) -> IngestOut:
    return IngestOut(index_version=report.version, committed=report.committed, added=report.added,
                     updated=report.updated, unchanged=report.unchanged, removed=report.removed,
                     chunks_total=report.chunks_total, seconds=round(report.seconds, 3),
                     skipped=[{"source": s.source, "reason": s.reason} for s in report.skipped])


async def _uploads(request: Request, engine: Engine, max_file_mb: float) -> IngestOut:
    form = await request.form()
    files = [f for f in form.getlist("files") if hasattr(f, "filename")]
    if not files:
        raise InvalidRequestError("multipart upload needs one or more 'files' parts")
    docs, skipped = load_uploads([(f.filename, await f.read()) for f in files], int(max_file_mb * 1e6))
    out = _ingest_out(await run_in_threadpool(engine.ingest, docs))
    out.skipped = skipped + out.skipped
    return out


@router.post("/documents", response_model=IngestOut, responses=ERRORS, openapi_extra=_BODY)
async def add_documents(request: Request, engine: EngineDep, settings: SettingsDep) -> IngestOut:
    """Add or update documents: JSON `{documents: [{id, text, title?, metadata?}]}` or multipart
    file uploads (`files`: .md .txt .html .pdf .jsonl). Same incremental ingest as the CLI; the
    live index is swapped atomically afterwards."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await _uploads(request, engine, settings.max_file_mb)
    try:
        payload = DocumentsIn.model_validate_json(await request.body())
    except ValueError as exc:
        raise RequestValidationError(getattr(exc, "errors", lambda: [])()) from exc
    docs = [Document(doc_id=d.id, text=d.text, title=d.title, source=f"api:{d.id}", format="api",
                     metadata=dict(d.metadata)) for d in payload.documents]
    return _ingest_out(await run_in_threadpool(engine.ingest, docs))


@router.delete("/documents/{doc_id:path}", response_model=IngestOut, responses=ERRORS)
def delete_document(doc_id: str, engine: EngineDep) -> IngestOut:
    """Remove a document and its chunks (404 when the id is unknown)."""
    if doc_id not in engine.current().index.doc_hashes():
        return error_response(404, "unknown document", doc_id)
    return _ingest_out(engine.ingest(delete=[doc_id]))


@router.get("/documents", response_model=DocumentList, responses=ERRORS)
def list_documents(engine: EngineDep, limit: int = 100, offset: int = 0) -> DocumentList:
    """Documents in the live index, by id."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidRequestError("limit must be 1..1000 and offset >= 0")
    index = engine.current().index
    return DocumentList(total=int(index.manifest["counts"]["documents"]),
                        documents=[DocumentOut(**d) for d in index.documents(limit=limit, offset=offset)])
