"""Write jobs: every ``POST``/``DELETE /documents`` runs as a job on one writer thread.

Writes are queued in order behind the running one (a bounded queue: past it, 503), each with a
status, its progress (stage, done, total) and its result or error; a queued job can be cancelled,
and a running one stops at its next progress point before anything is committed. Reads never wait
for a job: they keep using the live index until the job's commit swaps a new one in. A request
waits ``RAG_WRITE_WAIT_S`` for its job and answers 202 with the job if it is not finished by then.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from rag.errors import Cancelled, NotFoundError, OverloadedError, RagError

log = logging.getLogger("rag.api")

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINISHED = (SUCCEEDED, FAILED, CANCELLED)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


@dataclass(eq=False)
class Job:
    """One write: ``work(job)`` runs on the writer thread and returns the result (a JSON-able dict)."""

    kind: str
    description: str
    work: Callable[[Job], dict]
    cleanup: Callable[[], None] = lambda: None
    collection: str = "default"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    status: str = QUEUED
    stage: str = "queued"
    done: int = 0
    total: int = 0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: dict | None = None
    error: RagError | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)

    def progress(self, stage: str, done: int = 0, total: int = 0) -> None:
        """Record progress; raises :class:`Cancelled` once the job was asked to stop."""
        self.stage, self.done, self.total = stage, done, total
        if self.cancel.is_set():
            raise Cancelled(f"job {self.id} was cancelled")

    def to_dict(self) -> dict:
        error = None if self.error is None else {"error": self.error.__class__.__name__, "detail": str(self.error)}
        return {"id": self.id, "collection": self.collection, "kind": self.kind, "description": self.description, "status": self.status,
                "stage": self.stage, "done": self.done, "total": self.total, "created_at": _iso(self.created),
                "started_at": _iso(self.started), "finished_at": _iso(self.finished),
                "cancel_requested": self.cancel.is_set(), "result": self.result, "error": error}


class JobQueue:
    """FIFO write jobs on one daemon thread; the last ``keep`` finished jobs stay queryable."""

    def __init__(self, max_queued: int, keep: int) -> None:
        self.max_queued, self.keep = max_queued, keep
        self._pending: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._cv = threading.Condition()
        self._stopping = False
        self._running: Job | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="rag-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Cancel the queued jobs, ask the running one to stop, and wait up to ``timeout`` s for it."""
        with self._cv:
            self._stopping = True
            while self._pending:
                self._finish(self._pending.popleft(), CANCELLED, error=Cancelled("the server is shutting down"))
            if self._running is not None:
                self._running.cancel.set()
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, kind: str, description: str, work: Callable[[Job], dict],
               cleanup: Callable[[], None] = lambda: None, collection: str = "default") -> Job:
        job = Job(kind, description, work, cleanup, collection)
        with self._cv:
            if self._stopping:
                raise OverloadedError("the server is shutting down", retry_after=30)
            if len(self._pending) >= self.max_queued:
                raise OverloadedError(f"{len(self._pending)} writes are queued (RAG_MAX_QUEUED_WRITES); retry later",
                                      retry_after=30)
            self._pending.append(job)
            self._jobs[job.id] = job
            self._cv.notify_all()
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"unknown job {job_id!r}")
        return job

    def list(self) -> list[Job]:
        return list(reversed(self._jobs.values()))

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once; ask a running one to stop (it ends ``cancelled`` unless it
        had already begun to commit). A finished job is left as it is."""
        job = self.get(job_id)
        with self._cv:
            if job.status == QUEUED:
                self._pending.remove(job)
                self._finish(job, CANCELLED, error=Cancelled(f"job {job.id} was cancelled"))
            elif job.status == RUNNING:
                job.cancel.set()
        return job

    @property
    def depth(self) -> int:
        return len(self._pending) + (self._running is not None)

    async def wait(self, job: Job, seconds: float) -> bool:
        """Wait (without holding a thread) up to ``seconds`` for ``job`` to finish."""
        end = time.monotonic() + seconds
        while not job.ended.is_set() and time.monotonic() < end:
            await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))
        return job.ended.is_set()

    # -- the writer thread ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._stopping:
                    self._cv.wait()
                if self._stopping and not self._pending:
                    return
                job = self._running = self._pending.popleft()
                job.status, job.started, job.stage = RUNNING, time.time(), "starting"
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            result = job.work(job)
        except Cancelled as exc:
            outcome = (CANCELLED, None, exc)
        except RagError as exc:
            outcome = (FAILED, None, exc)
        except Exception as exc:  # a bug: the job fails with a message, the writer thread lives on
            log.exception("write job %s failed", job.id)
            outcome = (FAILED, None, RagError(f"internal error in write job {job.id}: {exc.__class__.__name__}"))
        else:
            outcome = (SUCCEEDED, result, None)
        with self._cv:
            self._running = None
            self._finish(job, outcome[0], result=outcome[1], error=outcome[2])

    def _finish(self, job: Job, status: str, result: dict | None = None, error: RagError | None = None) -> None:
        job.status, job.result, job.error, job.finished = status, result, error, time.time()
        job.stage = status
        try:
            job.cleanup()
        except OSError as exc:
            log.warning("cleanup of job %s: %s", job.id, exc)
        job.ended.set()
        finished = [j for j in self._jobs.values() if j.status in FINISHED]
        for old in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[old.id]
