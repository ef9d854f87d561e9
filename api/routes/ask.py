"""Answers: ``POST /ask``, as one JSON response or as Server-Sent Events."""

from __future__ import annotations

import json
from functools import partial

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.deps import PROTECTED, EngineDep, MetricsDep, SettingsDep, SlotsDep
from api.errors import error_body
from api.generation import answer_once, guarded_events, sse_response
from api.schemas import ERRORS, AskRequest, AskResponse, ErrorOut
from rag.config import Settings
from rag.errors import RagError
from rag.serialize import answer_to_dict
from rag.types import Answer, GenParams

router = APIRouter(tags=["answers"], dependencies=PROTECTED)


def _params(req: AskRequest, settings: Settings) -> GenParams:
    """The request's sampling parameters, the settings' where it gives none."""
    return GenParams(temperature=settings.temperature if req.temperature is None else req.temperature,
                     top_p=settings.top_p if req.top_p is None else req.top_p,
                     max_tokens=settings.max_tokens if req.max_tokens is None else req.max_tokens,
                     seed=settings.seed)


def _answer_out(answer: Answer, index_version: int) -> dict:
    return AskResponse(**answer_to_dict(answer), index_version=index_version).model_dump()


def _log_answer(request: Request, answer: Answer) -> None:
    request.state.log_extra = {"refused": answer.refused, "timings_ms": answer.timings_ms}


@router.post("/ask", response_model=AskResponse,
             responses={**ERRORS, 502: {"model": ErrorOut}, 504: {"model": ErrorOut},
                        200: {"content": {"text/event-stream": {}}}})
async def ask(req: AskRequest, request: Request, engine: EngineDep, settings: SettingsDep, metrics: MetricsDep,
              slots: SlotsDep):
    """Answer from the retrieved passages with `[n]` citations, or refuse (`refused: true`) when
    retrieval finds nothing relevant or the passages do not hold the answer. With `stream: true`
    (or `Accept: text/event-stream`): SSE `delta` events, then one `answer` event (or an `error`
    event when the LLM fails mid-stream). Answers wait for a generation slot (503 with Retry-After
    when the queue is full) and stop when the client goes away or after RAG_REQUEST_TIMEOUT_S (504)."""
    pipeline = engine.pipeline()
    version = pipeline.retriever.index.version
    filters = req.to_filters()
    params = _params(req, settings)
    slot = await slots.acquire()
    if not (req.stream or "text/event-stream" in request.headers.get("accept", "")):
        try:
            answer = await answer_once(request, settings, lambda cancel: pipeline.stream(
                req.question, req.top_k, filters, params, cancel, history=req.turns()))
        finally:
            slot.release()
        metrics.observe_answer(answer)
        _log_answer(request, answer)
        return _answer_out(answer, version)

    try:  # retrieval runs before the response starts, so that its errors are proper HTTP errors
        prepared = await run_in_threadpool(pipeline.prepare, req.question, req.top_k, filters, params.max_tokens,
                                           req.turns())
    except BaseException:
        slot.release()
        raise

    async def events():
        run = partial(pipeline.stream, req.question, req.top_k, filters, params, prepared=prepared)
        try:
            async for kind, value in guarded_events(request, settings, slot, lambda cancel: run(cancel=cancel)):
                if kind == "delta":
                    yield {"event": "delta", "data": json.dumps({"text": value}, ensure_ascii=False)}
                else:
                    metrics.observe_answer(value)
                    _log_answer(request, value)
                    yield {"event": "answer", "data": json.dumps(_answer_out(value, version), ensure_ascii=False)}
        except RagError as exc:
            yield {"event": "error", "data": json.dumps(error_body(exc))}

    return sse_response(events(), settings, slot)
