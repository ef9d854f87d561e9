"""Hybrid retrieval: BM25 and dense top-N, fused, optionally reranked by a cross-encoder.

Every hit carries each stage's score and rank, so that an engineer can see why a passage won.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from rag.config import Settings
from rag.errors import InvalidRequestError
from rag.models.embedder import embedder_languages
from rag.protocols import Embedder, IndexBackend, Reranker
from rag.retrieval.fusion import convex, normalize, ranked, rrf
from rag.text import detect_lang
from rag.types import Filters, Hit, SearchResult

MODES = ("bm25", "dense", "hybrid")
# BM25 calls to a remote index run here while the calling thread embeds the query (see _first_stages).
_FIRST_STAGES = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bm25")


def _ranks(ids: Sequence[int]) -> dict[int, int]:
    return {int(i): r for r, i in enumerate(ids, start=1)}


class HybridRetriever:
    """Retriever over one loaded index version. Cheap to build; holds no per-query state."""

    def __init__(self, index: IndexBackend, embedder: Embedder, settings: Settings,
                 reranker: Reranker | None = None, reranker_status: str | None = None) -> None:
        index.check_embedder(embedder.name, embedder.dim, getattr(embedder, "fingerprint", None))
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker
        self.reranker_status = reranker_status or ("on" if reranker is not None else "off")
        self.embedder_langs = embedder_languages(embedder.name)

    def dense_supports(self, lang: str) -> bool:
        """False when the embedder is known not to cover ``lang`` (English-only model, Korean text)."""
        return not (self.settings.language_gate and self.embedder_langs == "en" and lang != "en")

    def rerank_supports(self, lang: str) -> bool:
        """False when the cross-encoder is known not to read ``lang`` (see ``reranker_languages``)."""
        langs = {x.strip().lower() for x in self.settings.reranker_languages.split(",") if x.strip()}
        return not self.settings.language_gate or "any" in langs or lang in langs

    def search(self, query: str, k: int | None = None, mode: str | None = None, rerank: bool | None = None,
               filters: Filters | None = None, candidates: int | None = None) -> SearchResult:
        """Top ``k`` hits for ``query``: first-stage lists, fusion, then (optionally) reranking."""
        s = self.settings
        k = k or s.top_k
        mode = mode or s.retrieval_mode
        do_rerank = self._check(query, mode, rerank)
        n = max(candidates or s.candidates, k)
        timings: dict[str, float] = {}
        t_all = time.perf_counter()
        lang = detect_lang(query)
        allowed_ids = None
        if filters:
            with _timed(timings, "filter"):
                allowed_ids = self.index.allowed_chunk_ids(filters)
        dense_used = mode == "dense" or (mode == "hybrid" and self.dense_supports(lang))
        bm25, dense = self._first_stages(query, n, allowed_ids, timings, mode in ("bm25", "hybrid"), dense_used)
        with _timed(timings, "fuse"):
            fused = self._fuse(mode, bm25, dense)
        rerank_scores: dict[int, float] = {}
        final = fused
        if do_rerank and fused and self.rerank_supports(lang):
            final, rerank_scores = self._rerank(query, fused, k, timings)
        hits = self._hits(ranked(final)[:k], final, bm25, dense, fused, rerank_scores)
        timings["total"] = (time.perf_counter() - t_all) * 1000
        return SearchResult(hits=hits, mode=mode, timings_ms={k2: round(v, 3) for k2, v in timings.items()},
                            reranked=bool(rerank_scores), dense_used=bool(dense_used), query_lang=lang,
                            n_candidates=len(fused))

    def _check(self, query: str, mode: str, rerank: bool | None) -> bool:
        """Validate the request; returns whether to rerank."""
        if mode not in MODES:
            raise InvalidRequestError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not query or not query.strip():
            raise InvalidRequestError("query is empty")
        do_rerank = (self.reranker is not None) if rerank is None else rerank
        if do_rerank and self.reranker is None:
            raise InvalidRequestError("reranking requested but no reranker is configured (RAG_RERANKER)")
        return do_rerank

    def _first_stages(self, query: str, n: int, allowed_ids: np.ndarray | None, timings: dict[str, float],
                      use_bm25: bool, use_dense: bool) -> tuple[dict[int, float], dict[int, float]]:
        """(BM25 list, dense list). On an index whose searches are calls to a server (``remote``,
        Milvus), the BM25 call runs while the query is embedded and searched densely: the two round
        trips overlap instead of adding up."""
        if use_bm25 and use_dense and getattr(self.index, "remote", False):
            pending = _FIRST_STAGES.submit(self._bm25, query, n, allowed_ids, timings)
            dense = self._dense(query, n, allowed_ids, timings)
            return pending.result(), dense
        bm25 = self._bm25(query, n, allowed_ids, timings) if use_bm25 else {}
        return bm25, (self._dense(query, n, allowed_ids, timings) if use_dense else {})

    def _bm25(self, query: str, n: int, allowed_ids: np.ndarray | None, timings: dict[str, float]
              ) -> dict[int, float]:
        with _timed(timings, "bm25"):
            mask = None if allowed_ids is None else self.index.bm25.rows_allowed(allowed_ids)
            ids, scores = self.index.bm25.search(self.index.tokenizer(query), n, mask)
        return dict(zip(ids.tolist(), scores.tolist()))

    def _dense(self, query: str, n: int, allowed_ids: np.ndarray | None, timings: dict[str, float]
               ) -> dict[int, float]:
        with _timed(timings, "embed"):
            qvec = self.embedder.embed_query(query)
        with _timed(timings, "dense"):
            ids, scores = self.index.dense.search(qvec, n, allowed_ids)
        return dict(zip(ids.tolist(), scores.tolist()))

    def _fuse(self, mode: str, bm25: dict[int, float], dense: dict[int, float]) -> dict[int, float]:
        s = self.settings
        if mode == "bm25" or (mode == "hybrid" and not dense):
            return dict(bm25)  # hybrid whose dense list was gated off (or empty) is BM25 alone
        if mode == "dense" or not bm25:
            return dict(dense)
        if s.fusion == "rrf":
            return rrf([ranked(bm25), ranked(dense)], k=s.rrf_k)
        return convex([bm25, dense], [1 - s.fusion_alpha, s.fusion_alpha], s.fusion_norm)

    def _rerank(self, query: str, fused: dict[int, float], k: int, timings: dict[str, float]
                ) -> tuple[dict[int, float], dict[int, float]]:
        """(final scores, cross-encoder scores) of the top fused candidates. The final score mixes
        the normalised cross-encoder score (or logit) with the normalised fused score."""
        s = self.settings
        top = ranked(fused)[: max(s.rerank_top, k)]
        chunks = self.index.chunks_by_ids(top)
        with _timed(timings, "rerank"):
            ce, ce_logits = self.reranker.score_with_logits(query, [chunks[i].embed_text() for i in top])
        rerank_scores = dict(zip(top, ce.tolist()))
        w = s.rerank_weight
        if w >= 1.0:
            return dict(rerank_scores), rerank_scores
        ce_for_mix = rerank_scores if s.rerank_score_space == "probability" else dict(zip(top, ce_logits.tolist()))
        nce, nf = normalize(ce_for_mix), normalize({i: fused[i] for i in top})
        return {i: w * nce[i] + (1 - w) * nf[i] for i in top}, rerank_scores

    def _hits(self, top_ids: list[int], final: dict[int, float], bm25: dict[int, float], dense: dict[int, float],
              fused: dict[int, float], rerank_scores: dict[int, float]) -> tuple[Hit, ...]:
        chunks = self.index.chunks_by_ids(top_ids)
        bm25_r, dense_r, fused_r = _ranks(ranked(bm25)), _ranks(ranked(dense)), _ranks(ranked(fused))
        rerank_r = _ranks(ranked(rerank_scores)) if rerank_scores else {}
        return tuple(Hit(chunk=chunks[i], score=float(final[i]), bm25_score=bm25.get(i), bm25_rank=bm25_r.get(i),
                         dense_score=dense.get(i), dense_rank=dense_r.get(i), fused_score=fused.get(i),
                         fused_rank=fused_r.get(i), rerank_score=rerank_scores.get(i), rerank_rank=rerank_r.get(i))
                     for i in top_ids)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Adds the block's wall time to ``timings[stage]`` in milliseconds."""
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = (time.perf_counter() - t) * 1000
