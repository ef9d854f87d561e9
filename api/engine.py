"""What the service loads once (index, embedder, reranker) and swaps atomically after writes."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from rag.config import Settings
from rag.embed import make_embedder
from rag.errors import IndexNotFoundError, RagError
from rag.index import Index
from rag.rerank import make_reranker
from rag.retrieve import HybridRetriever

log = logging.getLogger("rag.api")


class Engine:
    """Holds the live :class:`HybridRetriever`. Queries grab the current one (a plain attribute
    read) and keep using it even if a write swaps in a new index meanwhile; nothing in flight is
    dropped. Writes (ingest/delete) are serialised in-process and by the index lock across
    processes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.index_dir = Path(settings.index_dir)
        self.retriever: HybridRetriever | None = None
        self.embedder = None
        self.reranker, self.reranker_status = None, "off"
        self.error: str | None = None
        self.write_lock = threading.Lock()
        self.generator = None
        self.generator_status = "not loaded"

    def load(self) -> None:
        """Load models and the index; a missing index leaves the service up but not ready."""
        self.reranker, self.reranker_status = make_reranker(
            self.settings.reranker, self.settings.rerank_max_length, self.settings.embed_threads,
            self.settings.rerank_precision)
        if self.reranker is not None:
            self.reranker.load()
        self.load_generator()
        try:
            self.reload()
        except IndexNotFoundError as exc:
            self.error = str(exc)
            log.warning("not ready: %s", exc)

    def reload(self) -> None:
        index = Index.open(self.index_dir)
        if self.embedder is None or self.embedder.name != index.embedder_name:
            embedder = make_embedder(index.embedder_name, self.settings.embed_threads)
            embedder.load()
            self.embedder = embedder
        self.retriever = HybridRetriever(index, self.embedder, self.settings, self.reranker)
        self.error = None

    def load_generator(self) -> None:
        """The LLM loads once; when it cannot, /ask answers 503 with the reason (search still works)."""
        from rag.answer import make_generator

        try:
            generator = make_generator(self.settings)
            generator.load()
        except RagError as exc:
            self.generator, self.generator_status = None, f"unavailable: {exc}"
            log.warning("generator %s", self.generator_status)
            return
        self.generator, self.generator_status = generator, f"{self.settings.generator}: {generator.name}"

    def pipeline(self):
        from rag.answer import AnswerPipeline

        if self.generator is None:
            raise GeneratorUnavailable(f"no LLM available ({self.generator_status})")
        return AnswerPipeline(self.current(), self.generator, self.settings)

    def current(self) -> HybridRetriever:
        retriever = self.retriever
        if retriever is None:
            raise IndexNotFoundError(self.error or f"no index loaded from {self.index_dir}")
        return retriever

    def embedder_for_ingest(self):
        """Reuse the loaded embedder when it is the one the index needs (no second model load)."""
        return self.embedder


class GeneratorUnavailable(RagError):
    http_status = 503


def ready_info(engine: Engine) -> dict:
    r = engine.retriever
    info = {"ready": r is not None, "index_dir": str(engine.index_dir), "reranker": engine.reranker_status,
            "generator": engine.generator_status, "detail": engine.error}
    if r is not None:
        m = r.index.manifest
        info.update(index_version=m["version"], documents=m["counts"]["documents"], chunks=m["counts"]["chunks"],
                    embedder=m["embedder"]["name"])
    return info


__all__ = ["Engine", "ready_info", "RagError"]
