"""The one place a retriever is assembled: index + embedder (+ reranker), ready to search.

Used by the CLI, the HTTP engine, the evals and the benchmarks, so that all of them run the
same pipeline with the same settings (the reranker's precision and length included).
"""

from __future__ import annotations

from pathlib import Path

from rag.config import Settings
from rag.index.layout import current_version_dir
from rag.index.store import Index
from rag.models.embedder import make_embedder
from rag.models.reranker import make_reranker
from rag.protocols import Embedder, IndexBackend, Reranker
from rag.retrieval.retriever import HybridRetriever


def open_index(index_dir: Path | str, settings: Settings | None = None) -> IndexBackend:
    """The committed version of the index at ``index_dir`` (IndexNotFoundError when none), from the
    backend ``settings.backend`` names: the version files there, or its Milvus collection."""
    if settings is not None and settings.backend == "milvus":
        from rag.index.milvus import open_milvus

        return open_milvus(index_dir, settings)
    return Index.open(index_dir)


def committed_version_path(index_dir: Path | str, settings: Settings) -> Path | None:
    """The ``path`` of the version committed now (compared with a loaded index's ``path`` to see a
    commit by another process), or None when nothing is committed."""
    if settings.backend == "milvus":
        from rag.index.milvus import committed_version

        version = committed_version(index_dir, settings)
        return None if version is None else Path(index_dir) / f"v{version:06d}"
    return current_version_dir(Path(index_dir))


def load_embedder(name: str, settings: Settings, reuse: Embedder | None = None) -> Embedder:
    """The embedder ``name`` loaded now (so that no query pays for it), or ``reuse`` when it is that one."""
    if reuse is not None and reuse.name == name:
        return reuse
    embedder = make_embedder(name, settings.embed_threads, settings.e5_engine, settings.embed_precision)
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
                    reranker: tuple[Reranker | None, str] | None = None,
                    embedders: dict[str, Embedder] | None = None) -> HybridRetriever:
    """A retriever over the index at ``index_dir`` (default ``settings.index_dir``).

    ``embedder`` and ``reranker`` (a ``load_reranker`` result) reuse models that are already
    loaded, and so do ``embedders`` (by name; an embedder loaded here is added to it, for the next
    index that needs it); ``rerank=False`` builds one without a cross-encoder."""
    index = open_index(index_dir or settings.index_dir, settings)
    if embedders is not None and (embedder is None or embedder.name != index.embedder_name):
        embedder = embedders.get(index.embedder_name)
    embedder = load_embedder(index.embedder_name, settings, reuse=embedder)
    if embedders is not None:
        embedders.setdefault(embedder.name, embedder)
    if not rerank:
        model, status = None, "off"
    else:
        model, status = reranker if reranker is not None else load_reranker(settings)
    return HybridRetriever(index, embedder, settings, model, reranker_status=status)
