"""Running an answer for an HTTP request: inside a generation slot, and stopped as soon as nobody
waits for it (the client went away, the request outlived ``RAG_REQUEST_TIMEOUT_S``, the server is
shutting down), so that no generation outlives its client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator

from fastapi import Request
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from api.limits import Slot
from rag.config import Settings
from rag.errors import Cancelled, GeneratorTimeout
from rag.types import Answer

Events = Iterator[tuple[str, object]]


def _final(run: Callable[[threading.Event], Events], cancel: threading.Event) -> Answer:
    for kind, value in run(cancel):
        if kind == "answer":
            return value  # type: ignore[return-value]
    raise Cancelled("the answer was stopped before it finished")


def _timeout(settings: Settings) -> GeneratorTimeout:
    return GeneratorTimeout(f"the answer took longer than {settings.request_timeout_s:g} s (RAG_REQUEST_TIMEOUT_S)")


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body is already read: the next message is the
    disconnect). A blocking receive, because a no-wait check does not see through middleware."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def answer_once(request: Request, settings: Settings, run: Callable[[threading.Event], Events]) -> Answer:
    """``run(cancel)``'s answer, computed in a worker thread; ``cancel`` is set when the client
    disconnects (:class:`Cancelled`) or the deadline passes (:class:`GeneratorTimeout`, 504)."""
    cancel = threading.Event()
    task = asyncio.ensure_future(run_in_threadpool(_final, run, cancel))
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        done, _ = await asyncio.wait({task, gone}, timeout=settings.request_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        if gone in done:
            raise Cancelled("the client went away")
        raise _timeout(settings)
    finally:
        gone.cancel()
        if not task.done():
            cancel.set()  # the worker stops at its next token; wait briefly so the slot is truly free
            await asyncio.wait({task}, timeout=10)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a stopped run's error is expected, not "never retrieved"


async def guarded_events(request: Request, settings: Settings, slot: Slot,
                         run: Callable[[threading.Event], Events]) -> AsyncIterator[tuple[str, object]]:
    """``run(cancel)``'s events for a streamed response; stops (and frees ``slot``) when the client
    disconnects, and raises :class:`GeneratorTimeout` past the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.request_timeout_s
    cancel = threading.Event()
    events = run(cancel)
    try:
        async for kind, value in iterate_in_threadpool(events):
            if await request.is_disconnected():
                return
            if loop.time() > deadline:
                raise _timeout(settings)
            yield kind, value
    finally:
        cancel.set()
        slot.release()
        try:  # a suspended generator holds the model's lock until it is closed
            events.close()
        except ValueError:  # still running in its worker thread: it sees ``cancel`` at the next token
            pass


def sse_response(events: AsyncIterator[dict], settings: Settings, slot: Slot) -> EventSourceResponse:
    """A streamed answer. On server shutdown it may run on for the grace period (in-flight answers
    finish), then it is cancelled; the slot is freed however the stream ends."""
    return EventSourceResponse(events, ping=15, background=BackgroundTask(slot.release),
                               shutdown_grace_period=max(0.0, settings.shutdown_grace_s - 1.0))
