"""Documents: add or update (JSON or file uploads), list, delete. Every write runs as a job on the
one writer thread (``api.jobs``) through the same incremental, atomic ingest as the CLI; the live
index is swapped after each commit. A request waits ``RAG_WRITE_WAIT_S`` for its job: finished, it
answers 200 with the result (or the job's error); otherwise 202 with the job to poll."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import PROTECTED, EngineDep, JobsDep, SettingsDep, WriteEngineDep
from api.engine import Engine
from api.errors import error_response
from api.jobs import CANCELLED, FAILED, Job, JobQueue
from api.schemas import ERRORS, DocumentList, DocumentOut, DocumentsIn, ErrorOut, IngestOut, JobOut
from api.uploads import load_upload_dir, save_uploads
from rag.config import Settings
from rag.errors import Cancelled, EmptyCollectionError, IndexNotFoundError, InvalidRequestError
from rag.types import Document

router = APIRouter(tags=["documents"], dependencies=PROTECTED)

_BODY = {"requestBody": {"content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/DocumentsIn"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"files": {
        "type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}
_WRITE_RESPONSES = {**ERRORS, 202: {"model": JobOut, "description": "The write runs on: poll `Location`."},
                    404: {"model": ErrorOut}, 409: {"model": ErrorOut}}
WaitQuery = Query(None, ge=0, le=300, description="Seconds to wait for the write before answering 202 with its "
                  "job (default: RAG_WRITE_WAIT_S; 0: answer 202 at once).")


def ingest_out(report, skipped_before: list[dict[str, str]] = ()) -> dict:
    return IngestOut(index_version=report.version, committed=report.committed, added=report.added,
                     updated=report.updated, unchanged=report.unchanged, removed=report.removed,
                     chunks_total=report.chunks_total, seconds=round(report.seconds, 3),
                     skipped=list(skipped_before) + [{"source": s.source, "reason": s.reason}
                                                     for s in report.skipped]).model_dump()


def _write(engine: Engine, settings: Settings, job: Job, documents=(), delete=()) -> dict:
    report = engine.ingest(documents, delete, on_progress=job.progress, lock_wait_s=settings.write_lock_wait_s)
    return ingest_out(report)


async def _respond(jobs: JobQueue, job: Job, wait: float | None, settings: Settings):
    """The job's result if it ends within the wait (its error as the error it is), else 202 + the job."""
    if await jobs.wait(job, settings.write_wait_s if wait is None else wait):
        if job.status == FAILED and job.error is not None:
            raise job.error
        if job.status == CANCELLED:
            raise Cancelled(str(job.error or f"job {job.id} was cancelled"))
        return job.result
    return JSONResponse(status_code=202, content=JobOut(**job.to_dict()).model_dump(),
                        headers={"Location": f"/jobs/{job.id}"})


async def _upload_job(request: Request, engine: Engine, settings: Settings, jobs: JobQueue) -> Job:
    """Files are spooled to disk by the form parser, copied into the job's own directory in pieces,
    and parsed by the job (off the event loop)."""
    form = await request.form(max_files=settings.max_upload_files, max_fields=settings.max_upload_files + 10)
    files = [f for f in form.getlist("files") if hasattr(f, "filename")]
    if not files:
        raise InvalidRequestError("multipart upload needs one or more 'files' parts")
    directory = Path(tempfile.mkdtemp(prefix="rag-upload-"))
    try:
        await run_in_threadpool(save_uploads, [(f.filename, f.file) for f in files], directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    finally:
        await form.close()

    def work(job: Job) -> dict:
        job.progress("load", 0, len(files))
        docs, skipped = load_upload_dir(directory, int(settings.max_file_mb * 1e6))
        report = engine.ingest(docs, on_progress=job.progress, lock_wait_s=settings.write_lock_wait_s)
        return ingest_out(report, skipped)

    try:
        return jobs.submit("upload", f"{len(files)} file(s)", work, collection=engine.name,
                           cleanup=lambda: shutil.rmtree(directory, ignore_errors=True))
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


@router.post("/documents", response_model=IngestOut, responses=_WRITE_RESPONSES, openapi_extra=_BODY)
async def add_documents(request: Request, engine: WriteEngineDep, settings: SettingsDep, jobs: JobsDep,
                        wait: float | None = WaitQuery):
    """Add or update documents: JSON `{documents: [{id, text, title?, metadata?}]}` or multipart
    file uploads (`files`: .md .txt .html .pdf .jsonl). Same incremental ingest as the CLI; the
    live index is swapped atomically afterwards. A write that outlasts `wait` answers 202 with its
    job (`Location: /jobs/{id}`)."""
    if not engine.loaded:  # 503 before anything is queued while the models load; an empty collection takes documents
        raise IndexNotFoundError("loading models and index")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await _respond(jobs, await _upload_job(request, engine, settings, jobs), wait, settings)
    try:
        payload = DocumentsIn.model_validate_json(await request.body())
    except ValueError as exc:
        raise RequestValidationError(getattr(exc, "errors", lambda: [])()) from exc
    docs = [Document(doc_id=d.id, text=d.text, title=d.title, source=f"api:{d.id}", format="api",
                     metadata=dict(d.metadata)) for d in payload.documents]
    job = jobs.submit("add", f"{len(docs)} document(s)", lambda j: _write(engine, settings, j, documents=docs),
                      collection=engine.name)
    return await _respond(jobs, job, wait, settings)


@router.delete("/documents/{doc_id:path}", response_model=IngestOut, responses=_WRITE_RESPONSES)
async def delete_document(doc_id: str, engine: WriteEngineDep, settings: SettingsDep, jobs: JobsDep,
                          wait: float | None = WaitQuery):
    """Remove a document and its chunks (404 when the id is unknown)."""
    try:
        known = engine.current().index.doc_hashes()
    except EmptyCollectionError:
        known = {}
    if doc_id not in known:
        return error_response(404, "unknown document", doc_id)
    job = jobs.submit("delete", doc_id, lambda j: _write(engine, settings, j, delete=[doc_id]),
                      collection=engine.name)
    return await _respond(jobs, job, wait, settings)


@router.get("/documents", response_model=DocumentList, responses=ERRORS)
def list_documents(engine: EngineDep, limit: int = 100, offset: int = 0) -> DocumentList:
    """Documents in the live index, by id."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidRequestError("limit must be 1..1000 and offset >= 0")
    try:
        index = engine.current().index
    except EmptyCollectionError:
        return DocumentList(total=0, documents=[])
    return DocumentList(total=int(index.manifest["counts"]["documents"]),
                        documents=[DocumentOut(**d) for d in index.documents(limit=limit, offset=offset)])
