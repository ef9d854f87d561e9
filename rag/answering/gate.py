"""The retrieval gate: refuse before calling the LLM when no retrieved passage is relevant enough."""

from __future__ import annotations

from dataclasses import dataclass, field

from rag.config import Settings
from rag.types import SearchResult


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str | None
    signals: dict[str, float | None] = field(default_factory=dict)


def retrieval_gate(result: SearchResult, bm25_ratio: float | None, settings: Settings, embedder: str) -> GateDecision:
    """Pass when a first-stage signal says the best candidate is relevant and, when reranking
    ran and ``gate_rerank`` is set, the cross-encoder agrees.

    First-stage signals (either suffices): the best dense cosine (its threshold depends on the
    embedder: e5 cosines sit much higher than MiniLM's) and the BM25 top score divided by its
    ceiling for this query (scale-free across queries, not across tokenizers and chunkings:
    ``gate_bm25_lang`` holds thresholds per embedder index and query language). These keep
    out-of-corpus questions out.
    The cross-encoder (``gate_rerank``, off by default) can only add refusals, meant for on-topic
    questions that no passage answers (SQuAD 2.0's unanswerable)."""
    if not result.hits:
        return GateDecision(False, "no passages retrieved")
    dense = max((h.dense_score for h in result.hits if h.dense_score is not None), default=None)
    rerank = max((h.rerank_score for h in result.hits if h.rerank_score is not None), default=None)
    signals = {"bm25_ratio": bm25_ratio, "dense_max": dense, "rerank_max": rerank}
    dense_min = settings.gate_dense.get(embedder)
    bm25_min = settings.gate_bm25_lang.get(f"{embedder}/{result.query_lang}", settings.gate_bm25)
    first = (dense is not None and dense_min is not None and dense >= dense_min) or \
        (bm25_ratio is not None and bm25_ratio >= bm25_min)
    if not first:
        return GateDecision(False, "no retrieved passage is relevant enough", signals)
    if rerank is not None and settings.gate_rerank is not None and rerank < settings.gate_rerank:
        return GateDecision(False, "the reranker found no passage that answers the question", signals)
    return GateDecision(True, None, signals)
