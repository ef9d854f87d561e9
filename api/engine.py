"""What the service loads once (index, embedder, reranker, LLM) and swaps atomically after writes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ingest.pipeline import IngestReport, ingest
from rag.answering.pipeline import AnswerPipeline
from rag.config import Settings
from rag.collections import DEFAULT
from rag.errors import EmptyCollectionError, GeneratorUnavailableError, IndexNotFoundError, NotFoundError, RagError
from rag.models.generator import make_generator
from rag.retrieval.factory import build_retriever, committed_version_path, load_reranker
from rag.protocols import Embedder
from rag.retrieval.retriever import HybridRetriever
from rag.text import warm_up as warm_up_tokenizer
from rag.types import Document

log = logging.getLogger("rag.api")


class Models:
    """What every collection shares, loaded once at start-up: the tokenizers, the cross-encoder, the
    LLM, and each embedder an index needs (by name)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.reranker, self.reranker_status = None, "not loaded"
        self.generator, self.generator_status = None, "not loaded"
        self.embedders: dict[str, Embedder] = {}
        self.loaded = False
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self.loaded:
                return
            warm_up_tokenizer(self.settings.tokenizer_korean)
            self.reranker, self.reranker_status = load_reranker(self.settings)
            self.load_generator()
            self.loaded = True

    def load_generator(self) -> None:
        """The LLM loads once; when it cannot, /ask answers 503 with the reason (search still works)."""
        try:
            generator = make_generator(self.settings)
            generator.load()
        except RagError as exc:
            self.generator, self.generator_status = None, f"unavailable: {exc}"
            log.warning("generator %s", self.generator_status)
            return
        self.generator, self.generator_status = generator, f"{self.settings.generator}: {generator.name}"


def _shared(name: str) -> property:
    """An attribute of the shared :class:`Models`, read and set through an engine."""
    return property(lambda self: getattr(self.models, name), lambda self, value: setattr(self.models, name, value))


class Engine:
    """Holds the live :class:`HybridRetriever` of one collection. Queries grab the current one (a
    plain attribute read) and keep using it even if a write swaps in a new index meanwhile; nothing
    in flight is dropped. Writes (ingest/delete) are serialised in-process and by the index lock
    across processes. Models come from a :class:`Models` that other collections' engines share."""

    reranker = _shared("reranker")
    reranker_status = _shared("reranker_status")
    generator = _shared("generator")
    generator_status = _shared("generator_status")

    def __init__(self, settings: Settings, models: Models | None = None, name: str = "default") -> None:
        self.settings = settings
        self.name = name
        self.models = models or Models(settings)
        self.index_dir = Path(settings.index_dir)
        self.retriever: HybridRetriever | None = None
        self.error: str | None = None
        self.loaded = False
        self.deleted = False  # its collection was deleted: writes still queued for it fail
        self.write_lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self._next_refresh = 0.0

    def load(self) -> None:
        """Load everything a first request would (tokenizers, models, the index), so that no request
        pays for it; a missing index leaves the service up but not ready."""
        self.models.load()
        try:
            self.reload()
        except RagError as exc:  # no index, or an unreadable one: up, not ready, the reason in /readyz
            self.error = str(exc)
            log.warning("collection %s not ready: %s", self.name, exc)
        self.loaded = True

    def reload(self) -> None:
        """Open the committed index version (reusing the loaded models) and make it the live one."""
        embedder = self.retriever.embedder if self.retriever is not None else None
        self.retriever = build_retriever(self.settings, self.index_dir, embedder=embedder,
                                         reranker=(self.reranker, self.reranker_status),
                                         embedders=self.models.embedders)
        self.error = None

    def load_generator(self) -> None:
        self.models.load_generator()

    def pipeline(self) -> AnswerPipeline:
        if self.generator is None:
            raise GeneratorUnavailableError(f"no LLM available ({self.generator_status})")
        return AnswerPipeline(self.current(), self.generator, self.settings)

    def close(self) -> None:
        """Release the live index's files (at shutdown)."""
        if self.retriever is not None:
            self.retriever.index.close()

    def refresh(self) -> None:
        """Swap in a version that another process (a CLI ingest) committed since the last look.

        Checked at most every ``RAG_INDEX_REFRESH_S`` (one small file read); one request does the
        reload while the others go on with the live version; a version that fails to open leaves the
        live one served (logged)."""
        interval = self.settings.index_refresh_s
        now = time.monotonic()
        if not self.loaded or interval <= 0 or now < self._next_refresh:
            return
        self._next_refresh = now + interval
        committed = committed_version_path(self.index_dir, self.settings)
        live = self.retriever.index.path if self.retriever is not None else None
        if committed is None or committed == live or not self._swap_lock.acquire(blocking=False):
            return
        try:
            self.reload()
            log.info("index version %s committed by another process is now served", committed.name)
        except RagError as exc:
            log.warning("kept the live index version: %s", exc)
        finally:
            self._swap_lock.release()

    def current(self) -> HybridRetriever:
        self.refresh()
        retriever = self.retriever
        if retriever is None:
            if self.name != DEFAULT and self.loaded and committed_version_path(self.index_dir, self.settings) is None:
                raise EmptyCollectionError(f"collection {self.name} holds no documents yet: add some with "
                                           f"POST /collections/{self.name}/documents")
            raise IndexNotFoundError(self.error or f"no index loaded from {self.index_dir}")
        return retriever

    def ingest(self, documents: Sequence[Document] = (), delete: Sequence[str] = (),
               on_progress: Callable[[str, int, int], None] | None = None, lock_wait_s: float = 0.0
               ) -> IngestReport:
        """Add/update ``documents`` and remove ``delete`` in one committed version, then swap it in.
        A new index chooses its embedder (RAG_EMBEDDER); an existing one reuses the loaded model.
        While another process writes the index, the index lock waits up to ``lock_wait_s`` seconds
        (reported to ``on_progress`` as the stage ``waiting for the index lock``)."""
        with self.write_lock:
            if self.deleted:
                raise NotFoundError(f"unknown collection: {self.name}")
            embedder = self.retriever.embedder if self.retriever is not None else None
            report = ingest([], self.index_dir, self.settings, documents=list(documents), delete=list(delete),
                            embedder=embedder, progress=False, on_progress=on_progress, lock_wait_s=lock_wait_s,
                            loaded=self.models.embedders)
            if report.committed:
                self.reload()  # atomic swap: in-flight queries finish on the version they started with
        return report


def gauges(engine: Engine) -> dict:
    """What /metrics reports of the engine's state when scraped (memory a long-running service holds)."""
    def cache_bytes() -> float:
        return float(getattr(engine.generator, "cache_bytes", lambda: 0)())

    def live(key: str) -> Callable[[], float]:
        return lambda: float(engine.retriever.index.manifest[key] if key == "version" else
                             engine.retriever.index.manifest["counts"][key]) if engine.retriever else 0.0

    return {"rag_llm_prompt_cache_bytes": ("Saved LLM prompt states held in memory", cache_bytes),
            "rag_index_version": ("The index version served", live("version")),
            "rag_index_documents": ("Documents in the index version served", live("documents")),
            "rag_index_chunks": ("Chunks in the index version served", live("chunks"))}


def ready_info(engine: Engine) -> dict:
    engine.refresh()
    r = engine.retriever
    detail = engine.error if engine.loaded else "loading models and index"
    info = {"ready": engine.loaded and r is not None, "index_dir": str(engine.index_dir),
            "reranker": engine.reranker_status, "generator": engine.generator_status, "detail": detail}
    if r is not None:
        m = r.index.manifest
        info.update(index_version=m["version"], documents=m["counts"]["documents"], chunks=m["counts"]["chunks"],
                    embedder=m["embedder"]["name"])
    return info
