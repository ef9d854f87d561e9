"""Hits, search results and answers as plain JSON-able dicts.

One serializer for every edge: ``rag search --json`` / ``rag ask --json`` print these, and the
HTTP schemas (``api.schemas``) validate exactly these shapes.
"""

from __future__ import annotations

from typing import Any

from rag.types import Answer, Citation, Grounding, Hit, SearchResult

SNIPPET_CHARS = 300


def hit_to_dict(hit: Hit) -> dict[str, Any]:
    c = hit.chunk
    return {"chunk_id": c.chunk_id, "doc_id": c.doc_id, "title": c.title, "source": c.source,
            "heading": c.heading, "start": c.start, "end": c.end, "text": c.text, "score": hit.score,
            "scores": {"bm25": hit.bm25_score, "dense": hit.dense_score, "fused": hit.fused_score,
                       "rerank": hit.rerank_score},
            "ranks": {"bm25": hit.bm25_rank, "dense": hit.dense_rank, "fused": hit.fused_rank,
                      "rerank": hit.rerank_rank}}


def result_to_dict(result: SearchResult) -> dict[str, Any]:
    return {"mode": result.mode, "reranked": result.reranked, "dense_used": result.dense_used,
            "query_lang": result.query_lang, "candidates": result.n_candidates,
            "timings_ms": result.timings_ms, "hits": [hit_to_dict(h) for h in result.hits]}


def citation_to_dict(citation: Citation) -> dict[str, Any]:
    c = citation.hit.chunk
    return {"n": citation.n, "doc_id": c.doc_id, "chunk_id": c.chunk_id, "title": c.title, "source": c.source,
            "snippet": c.text[:SNIPPET_CHARS], "score": citation.hit.score}


def grounding_to_dict(g: Grounding) -> dict[str, Any]:
    return {"sentence": g.sentence, "cited": list(g.cited), "supported": g.supported, "score": g.score,
            "lexical": g.lexical, "learned": g.learned}


def answer_to_dict(answer: Answer) -> dict[str, Any]:
    return {"answer": answer.text, "refused": answer.refused, "refusal_reason": answer.refusal_reason,
            "citations": [citation_to_dict(c) for c in answer.citations], "timings_ms": answer.timings_ms,
            "model": answer.model, "query": answer.query, "rewritten": answer.rewritten, "usage": answer.usage(),
            "grounding": [grounding_to_dict(g) for g in answer.grounding]}
