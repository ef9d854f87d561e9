import pytest

from rag.config import Settings
from rag.errors import EmbedderMismatchError, InvalidRequestError
from rag.index import Index
from rag.retrieval.retriever import HybridRetriever
from rag.types import Filters


@pytest.fixture(scope="module")
def index(fixture_index):
    return Index.open(fixture_index)


@pytest.fixture
def retriever(index, embedder):
    return HybridRetriever(index, embedder, Settings(_env_file=None))


def test_modes_return_hits_with_stage_scores(retriever):
    for mode in ("bm25", "dense", "hybrid"):
        res = retriever.search("What does the parameter k1 control in BM25?", k=3, mode=mode)
        assert res.hits and res.hits[0].chunk.doc_id == "bm25.md", mode
        assert [h.score for h in res.hits] == sorted((h.score for h in res.hits), reverse=True)
        top = res.hits[0]
        assert (top.bm25_score is not None) == (mode != "dense")
        assert (top.dense_score is not None) == (mode != "bm25")
        assert top.fused_rank == 1 and top.rerank_score is None
        assert res.timings_ms["total"] > 0


def test_hybrid_finds_paraphrase_that_bm25_misses(retriever):
    q = "graph-based approximate nearest neighbour vector search"
    assert retriever.search(q, k=1, mode="hybrid").hits[0].chunk.doc_id == "dense.md"


def test_rrf_and_convex_both_work(retriever):
    for fusion in ("rrf", "convex"):
        retriever.settings = retriever.settings.model_copy(update={"fusion": fusion})
        res = retriever.search("reciprocal rank fusion constant k", k=2)
        assert res.hits[0].chunk.doc_id == "fusion.html"


def test_filters_keep_k_hits_in_both_indexes(retriever):
    f = Filters(source="*ko/*")
    res = retriever.search("retrieval ranking", k=3, filters=f)
    assert {h.chunk.doc_id for h in res.hits} <= {"ko/bm25-ko.md", "ko/refusal-ko.md"}
    assert len(res.hits) == 3  # both Korean docs' chunks, though the query matches English docs better
    res = retriever.search("vitamin", k=5, filters=Filters(metadata=(("topic", "nutrition"),)))
    assert [h.chunk.doc_id for h in res.hits] == ["sci-2"]
    res = retriever.search("BM25", k=5, filters=Filters(doc_ids=("dense.md",)), mode="dense")
    assert {h.chunk.doc_id for h in res.hits} == {"dense.md"}
    with pytest.raises(InvalidRequestError, match="unknown metadata filter"):
        retriever.search("x", filters=Filters(metadata=(("colour", "red"),)))


def test_korean_query_skips_an_english_only_embedder(retriever):
    res = retriever.search("서울에서 열린 회의", k=2)
    assert not res.dense_used and res.query_lang == "ko"
    assert res.hits[0].chunk.doc_id == "ko/bm25-ko.md" and res.hits[0].dense_score is None
    retriever.settings = retriever.settings.model_copy(update={"language_gate": False})
    assert retriever.search("서울에서 열린 회의", k=2).dense_used


def test_invalid_requests(retriever):
    with pytest.raises(InvalidRequestError):
        retriever.search("   ")
    with pytest.raises(InvalidRequestError):
        retriever.search("x", mode="sparse")
    with pytest.raises(InvalidRequestError, match="no reranker"):
        retriever.search("x", rerank=True)


def test_embedder_must_match_the_index(index, e5_embedder):
    with pytest.raises(EmbedderMismatchError):
        HybridRetriever(index, e5_embedder, Settings(_env_file=None))
