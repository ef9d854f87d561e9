"""Retrieval only: ``POST /search``."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PROTECTED, EngineDep, MetricsDep
from api.schemas import ERRORS, SearchRequest, SearchResponse
from rag.serialize import result_to_dict

router = APIRouter(tags=["retrieval"], dependencies=PROTECTED)


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
def search(req: SearchRequest, engine: EngineDep, metrics: MetricsDep) -> SearchResponse:
    """The same hits as `rag search --json`, with each stage's score and rank."""
    retriever = engine.current()
    res = retriever.search(req.query, k=req.top_k, mode=req.mode, rerank=req.rerank, filters=req.to_filters())
    metrics.observe_stages(res.timings_ms)
    return SearchResponse(**result_to_dict(res), index_version=retriever.index.version)
