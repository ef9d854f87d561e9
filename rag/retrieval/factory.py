"""The one place a retriever is assembled: index + embedder (+ reranker), ready to search.

Used by the CLI, the HTTP engine, the evals and the benchmarks, so that all of them run the
same pipeline with the same settings (the reranker's precision and length included).
"""

from __future__ import annotations

from pathlib import Path

from rag.config import Settings
from rag.index.store import Index
from rag.models.embedder import make_embedder
from rag.models.reranker import make_reranker
from rag.protocols import Embedder, Reranker
from rag.retrieval.retriever import HybridRetriever


def open_index(index_dir: Path | str) -> Index:
    """The committed version of the index at ``index_dir`` (IndexNotFoundError when none)."""
    return Index.open(index_dir)


def load_embedder(name: str, settings: Settings, reuse: Embedder | None = None) -> Embedder:
    """The embedder ``name`` loaded now (so that no query pays for it), or ``reuse`` when it is that one."""
    if reuse is not None and reuse.name == name:
        return reuse
    embedder = make_embedder(name, settings.embed_threads, settings.e5_engine)
    embedder.load()
    return embedder


def load_reranker(settings: Settings) -> tuple[Reranker | None, str]:
    """(the configured cross-encoder loaded, or None; a one-line status for `rag info` and /readyz)."""
    reranker, status = make_reranker(settings.reranker, settings.rerank_max_length, settings.embed_threads,
                                     settings.rerank_precision)
    if reranker is not None:
        reranker.load()
    return reranker, status


def build_retriever(settings: Settings, index_dir: Path | str | None = None, *, rerank: bool = True,
                    embedder: Embedder | None = None,
                    reranker: tuple[Reranker | None, str] | None = None) -> HybridRetriever:
    """A retriever over the index at ``index_dir`` (default ``settings.index_dir``).

    ``embedder`` and ``reranker`` (a ``load_reranker`` result) reuse models that are already
    loaded; ``rerank=False`` builds one without a cross-encoder."""
    index = open_index(index_dir or settings.index_dir)
    embedder = load_embedder(index.embedder_name, settings, reuse=embedder)
    if not rerank:
        model, status = None, "off"
    else:
        model, status = reranker if reranker is not None else load_reranker(settings)
    return HybridRetriever(index, embedder, settings, model, reranker_status=status)
