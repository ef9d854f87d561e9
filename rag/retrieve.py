"""Hybrid retrieval: BM25 and dense top-N, fused, optionally reranked by a cross-encoder.

Every hit carries each stage's score and rank, so that an engineer can see why a passage won.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from rag.config import Settings
from rag.embed import embedder_languages
from rag.errors import InvalidRequestError
from rag.fusion import convex, normalize, ranked, rrf
from rag.index import Index
from rag.protocols import Embedder, Reranker
from rag.text import detect_lang
from rag.types import Filters, Hit, SearchResult

MODES = ("bm25", "dense", "hybrid")


def _ranks(ids: Sequence[int]) -> dict[int, int]:
    return {int(i): r for r, i in enumerate(ids, start=1)}


class HybridRetriever:
    """Retriever over one loaded :class:`Index`. Cheap to build; holds no per-query state."""

    def __init__(self, index: Index, embedder: Embedder, settings: Settings,
                 reranker: Reranker | None = None) -> None:
        index.check_embedder(embedder.name, embedder.dim, getattr(embedder, "fingerprint", None))
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker
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
        s = self.settings
        k = k or s.top_k
        mode = mode or s.retrieval_mode
        if mode not in MODES:
            raise InvalidRequestError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not query or not query.strip():
            raise InvalidRequestError("query is empty")
        n = max(candidates or s.candidates, k)
        do_rerank = (self.reranker is not None) if rerank is None else rerank
        if do_rerank and self.reranker is None:
            raise InvalidRequestError("reranking requested but no reranker is configured (RAG_RERANKER)")
        timings: dict[str, float] = {}
        t_all = time.perf_counter()
        lang = detect_lang(query)

        allowed_ids = None
        if filters:
            t = time.perf_counter()
            allowed_ids = self.index.allowed_chunk_ids(filters)
            timings["filter"] = (time.perf_counter() - t) * 1000

        bm25: dict[int, float] = {}
        dense: dict[int, float] = {}
        if mode in ("bm25", "hybrid"):
            t = time.perf_counter()
            mask = None if allowed_ids is None else np.isin(self.index.bm25.row_ids, allowed_ids)
            ids, scores = self.index.bm25.search(self.index.tokenizer(query), n, mask)
            bm25 = dict(zip(ids.tolist(), scores.tolist()))
            timings["bm25"] = (time.perf_counter() - t) * 1000
        dense_used = mode == "dense" or (mode == "hybrid" and self.dense_supports(lang))
        if dense_used:
            t = time.perf_counter()
            qvec = self.embedder.embed_query(query)
            timings["embed"] = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            ids, scores = self.index.dense.search(qvec, n, allowed_ids)
            dense = dict(zip(ids.tolist(), scores.tolist()))
            timings["dense"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        if mode == "bm25" or (mode == "hybrid" and not dense):
            fused = dict(bm25)  # hybrid whose dense list was gated off (or empty) is BM25 alone
        elif mode == "dense" or not bm25:
            fused = dict(dense)
        elif s.fusion == "rrf":
            fused = rrf([ranked(bm25), ranked(dense)], k=s.rrf_k)
        else:
            fused = convex([bm25, dense], [1 - s.fusion_alpha, s.fusion_alpha], s.fusion_norm)
        order = ranked(fused)
        timings["fuse"] = (time.perf_counter() - t) * 1000

        rerank_scores: dict[int, float] = {}
        final = fused
        if do_rerank and order and self.rerank_supports(lang):
            top = order[: max(s.rerank_top, k)]
            chunks = self.index.chunks_by_ids(top)
            t = time.perf_counter()
            ce, ce_logits = self.reranker.score_with_logits(query, [chunks[i].embed_text() for i in top])
            timings["rerank"] = (time.perf_counter() - t) * 1000
            rerank_scores = dict(zip(top, ce.tolist()))
            w = s.rerank_weight
            if w >= 1.0:
                final = dict(rerank_scores)
            else:
                ce_for_mix = (rerank_scores if s.rerank_score_space == "probability"
                              else dict(zip(top, ce_logits.tolist())))
                nce, nf = normalize(ce_for_mix), normalize({i: fused[i] for i in top})
                final = {i: w * nce[i] + (1 - w) * nf[i] for i in top}
            order = ranked(final)

        top_ids = order[:k]
        chunks = self.index.chunks_by_ids(top_ids)
        bm25_r, dense_r, fused_r = _ranks(ranked(bm25)), _ranks(ranked(dense)), _ranks(ranked(fused))
        rerank_r = _ranks(ranked(rerank_scores)) if rerank_scores else {}
        hits = tuple(Hit(chunk=chunks[i], score=float(final[i]), bm25_score=bm25.get(i), bm25_rank=bm25_r.get(i),
                         dense_score=dense.get(i), dense_rank=dense_r.get(i), fused_score=fused.get(i),
                         fused_rank=fused_r.get(i), rerank_score=rerank_scores.get(i), rerank_rank=rerank_r.get(i))
                     for i in top_ids)
        timings["total"] = (time.perf_counter() - t_all) * 1000
        return SearchResult(hits=hits, mode=mode, timings_ms={k2: round(v, 3) for k2, v in timings.items()},
                            reranked=bool(rerank_scores), dense_used=bool(dense_used), query_lang=lang,
                            n_candidates=len(fused))
