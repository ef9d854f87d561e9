"""OpenAI-compatible chat: ``POST /v1/chat/completions`` and ``GET /v1/models``.

The same pipeline as ``/ask``: the last user message is the question, earlier turns are the
conversation (a follow-up is rewritten for search), every turn is gated and may be refused on its
own. The answer text carries the ``[n]`` markers; the citations, the refusal flag and the searched
query travel in the extra field ``rag`` of the response and of the last stream chunk. A refusal is
a normal assistant message with ``rag.refused = true``.
"""

from __future__ import annotations

import json
import time
import uuid
from functools import partial

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import PROTECTED, EngineDep, MetricsDep, SettingsDep, SlotsDep
from api.generation import answer_once, guarded_events, sse_response
from api.schemas import (
    ERRORS,
    ChatChoice,
    ChatChoiceMessage,
    ChatCompletion,
    ChatCompletionRequest,
    ErrorOut,
    ModelCard,
    ModelList,
    RagExtra,
    Usage,
)
from rag.config import Settings
from rag.errors import RagError
from rag.serialize import citation_to_dict, grounding_to_dict
from rag.types import Answer, GenParams

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=PROTECTED)
MODEL_ID = "rag"


def _params(req: ChatCompletionRequest, settings: Settings) -> GenParams:
    max_tokens = req.max_completion_tokens or req.max_tokens
    return GenParams(temperature=settings.temperature if req.temperature is None else req.temperature,
                     top_p=settings.top_p if req.top_p is None else req.top_p,
                     max_tokens=settings.max_tokens if max_tokens is None else max_tokens, seed=settings.seed)


def _rag(answer: Answer, index_version: int) -> dict:
    return RagExtra(refused=answer.refused, refusal_reason=answer.refusal_reason,
                    citations=[citation_to_dict(c) for c in answer.citations], query=answer.query,
                    rewritten=answer.rewritten, answer=answer.text, timings_ms=answer.timings_ms,
                    grounding=[grounding_to_dict(g) for g in answer.grounding],
                    index_version=index_version).model_dump()


def _usage(answer: Answer) -> dict:
    return Usage(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.tokens,
                 total_tokens=answer.prompt_tokens + answer.tokens).model_dump()


def _parse(req: ChatCompletionRequest):
    try:
        return req.question_and_history()
    except ValueError as exc:
        raise RequestValidationError([{"loc": ("body", "messages"), "msg": str(exc), "type": "value_error"}]) from None


@router.get("/models", response_model=ModelList, responses=ERRORS)
def models(_: EngineDep) -> ModelList:
    """The one model this service answers as (`rag`: retrieval over the addressed collection + the
    configured LLM)."""
    return ModelList(data=[ModelCard(id=MODEL_ID, created=0)])


@router.post("/chat/completions", response_model=ChatCompletion,
             responses={**ERRORS, 502: {"model": ErrorOut}, 504: {"model": ErrorOut},
                        200: {"content": {"text/event-stream": {}}}})
async def chat_completions(req: ChatCompletionRequest, request: Request, engine: EngineDep, settings: SettingsDep,
                           metrics: MetricsDep, slots: SlotsDep):
    """OpenAI chat completions over the grounded pipeline; `stream: true` sends `chat.completion.chunk`
    events ending with `data: [DONE]`. Bounded like `/ask`: a generation slot (503 when the queue is
    full), stopped when the client goes away or after RAG_REQUEST_TIMEOUT_S (504)."""
    question, history = _parse(req)
    pipeline = engine.pipeline()
    version = pipeline.retriever.index.version
    params = _params(req, settings)
    slot = await slots.acquire()
    try:
        prepared = await run_in_threadpool(pipeline.prepare, question, req.top_k, req.to_filters(),
                                           params.max_tokens, history)
    except BaseException:
        slot.release()
        raise
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    run = partial(pipeline.stream, question, req.top_k, req.to_filters(), params, prepared=prepared)
    if not req.stream:
        try:
            answer = await answer_once(request, settings, lambda cancel: run(cancel=cancel))
        finally:
            slot.release()
        metrics.observe_answer(answer)
        return ChatCompletion(id=cid, created=created, model=req.model or MODEL_ID,
                              choices=[ChatChoice(message=ChatChoiceMessage(content=answer.text))],
                              usage=_usage(answer), rag=_rag(answer, version))

    def chunk(delta: dict, finish: str | None = None, **extra) -> dict:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model or MODEL_ID,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return {"data": json.dumps(body, ensure_ascii=False)}

    async def events():
        yield chunk({"role": "assistant", "content": ""})
        try:
            async for kind, value in guarded_events(request, settings, slot, lambda cancel: run(cancel=cancel)):
                if kind == "delta":
                    yield chunk({"content": value})
                    continue
                metrics.observe_answer(value)
                if not value.timings_ms.get("generate"):  # refused before the LLM: the refusal is the text
                    yield chunk({"content": value.text})
                yield chunk({}, "stop", rag=_rag(value, version), usage=_usage(value))
        except RagError as exc:
            yield {"data": json.dumps({"error": {"message": str(exc), "type": exc.__class__.__name__}})}
        yield {"data": "[DONE]"}

    return sse_response(events(), settings, slot)
