"""One Protocol per swappable stage. Implementations are chosen by settings.

Constructors are cheap; models load lazily on first use (or explicitly via ``load()``), so
that the API can load them once in its lifespan and tests can share one per session.

* :class:`Embedder` — texts to vectors (``rag.models.embedder``)
* :class:`Reranker` — (query, passage) scores (``rag.models.reranker``)
* :class:`Generator` — chat messages to streamed text (``rag.models.generator``)
* :class:`Retriever` — a query to ranked hits (``rag.retrieval.retriever``)
* :class:`IndexBackend` — what a retriever reads from an index (``rag.index.store``: files;
  ``rag.index.milvus``: Milvus)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rag.types import Chunk, Filters, GenParams, SearchResult


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors; passages and queries may be encoded differently."""

    name: str
    dim: int
    max_tokens: int  # the model's input limit, special tokens and prompts included
    overhead: int  # tokens the model adds to every passage (special tokens, "passage: " prompt)
    # Hash of a local model's weights (None for packaged presets): a model retrained in place keeps
    # its name, and an index built with the old weights must not be searched with the new ones.
    fingerprint: str | None

    def load(self) -> None: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Content tokens of each text, without ``overhead``."""
        ...

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


@runtime_checkable
class Reranker(Protocol):
    """Scores (query, passage) pairs jointly; higher is more relevant."""

    name: str

    def load(self) -> None: ...

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """The model's scores (its own output activation), one per passage, in order."""
        ...

    def score_with_logits(self, query: str, passages: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(scores, raw logits): the interpolation may mix logits, which a sigmoid would squash."""
        ...


@runtime_checkable
class Generator(Protocol):
    """An LLM behind a chat interface; ``stream`` yields text deltas."""

    name: str
    context_tokens: int

    def load(self) -> None: ...

    def count_tokens(self, text: str) -> int: ...

    def stream(self, messages: Sequence[dict[str, str]], params: GenParams) -> Iterator[str]: ...


class IndexBackend(Protocol):
    """What retrieval reads from an index version: lexical and dense search plus the chunk store."""

    manifest: dict[str, Any]
    # .search(tokens, k, allowed) -> (ids, scores); .rows_allowed(chunk_ids) -> that `allowed`;
    # .ceiling(tokens) -> float; .weight(term) -> IDF
    bm25: Any
    dense: Any  # .search(vector, k, allowed) -> (ids, scores)
    tokenizer: Any  # callable: text -> list of BM25 terms
    remote: bool  # searches are calls to a server: the retriever overlaps the BM25 and dense calls

    @property
    def version(self) -> int: ...

    @property
    def embedder_name(self) -> str: ...

    def chunks_by_ids(self, ids: Sequence[int]) -> dict[int, Chunk]: ...

    def allowed_chunk_ids(self, filters: Filters) -> np.ndarray: ...

    def doc_hashes(self) -> dict[str, str]: ...

    def check_embedder(self, name: str, dim: int, fingerprint: str | None = None) -> None: ...


class Retriever(Protocol):
    """A query to ranked hits, with per-stage timings."""

    index: IndexBackend
    embedder: Embedder
    reranker: Reranker | None

    def search(self, query: str, k: int | None = None, mode: str | None = None, rerank: bool | None = None,
               filters: Filters | None = None) -> SearchResult: ...
