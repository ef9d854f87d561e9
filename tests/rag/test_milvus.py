"""The Milvus backend (RAG_BACKEND=milvus) on real Milvus Lite: the same hits as the file backend,
incremental writes, filters, crash safety, and the service on top."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ingest.pipeline import ingest
from rag.config import Settings
from rag.errors import InvalidRequestError
from rag.index.milvus import MilvusStore, collection_names, glob_regex, quote
from rag.retrieval.factory import build_retriever, open_index
from rag.types import Filters
from tests.conftest import FIXTURES, ScriptedLLM

pytest.importorskip("pymilvus")

EN = ["how does BM25 score documents", "dense retrieval embeddings", "fusion of rankings", "vitamin D deficiency"]
KO = ["한국어 형태소 분석 검색", "서울에서 검색이 잘 되지 않는 이유"]


def _settings(backend: str, embedder: str = "minilm", **kw) -> Settings:
    return Settings(_env_file=None, embedder=embedder, backend=backend, reranker="none", **kw)


def _top(retriever, query, mode, k=5, **kw):
    return [(h.chunk.chunk_id, h.score) for h in retriever.search(query, k=k, mode=mode, **kw).hits]


def _same_hits(a, b):
    assert [c for c, _ in a] == [c for c, _ in b]
    for (_, x), (_, y) in zip(a, b):
        assert x == pytest.approx(y, rel=1e-4, abs=1e-5)


@pytest.fixture(scope="module")
def e5_pair(e5_embedder, tmp_path_factory):
    """The fixture corpus (English and Korean) in both backends, with the multilingual embedder."""
    root = tmp_path_factory.mktemp("e5-pair")
    out = {}
    for backend in ("files", "milvus"):
        s = _settings(backend, "e5-small")
        ingest([FIXTURES / "corpus"], root / backend, s, embedder=e5_embedder, progress=False)
        out[backend] = build_retriever(s, root / backend, rerank=False, embedder=e5_embedder)
    return out


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_same_hits_as_the_file_backend_in_english_and_korean(e5_pair, mode):
    files, milvus = e5_pair["files"], e5_pair["milvus"]
    assert milvus.index.manifest["counts"] == files.index.manifest["counts"]
    for q in EN + KO:
        _same_hits(_top(files, q, mode), _top(milvus, q, mode))
    assert _top(milvus, KO[0], mode)[0][0].startswith("ko/bm25-ko.md")


def test_hybrid_search_on_milvus_overlaps_the_bm25_call_with_the_dense_one(e5_pair, monkeypatch):
    """The BM25 round trip runs on another thread while the query is embedded and searched
    densely; the file backend (in-process) stays on the caller's thread. Hits are unchanged."""
    import threading

    seen = {}
    for backend, retriever in e5_pair.items():
        real = retriever.index.bm25.search

        def search(*args, _real=real, _backend=backend, **kw):
            seen[_backend] = threading.current_thread().name
            return _real(*args, **kw)

        monkeypatch.setattr(retriever.index.bm25, "search", search)
    _same_hits(_top(e5_pair["files"], EN[0], "hybrid"), _top(e5_pair["milvus"], EN[0], "hybrid"))
    assert seen["milvus"].startswith("bm25") and seen["files"] == threading.current_thread().name


def test_gate_ceiling_idf_and_tokenizer_match(e5_pair):
    files, milvus = e5_pair["files"].index, e5_pair["milvus"].index
    assert milvus.tokenizer.config() == files.tokenizer.config()
    for q in EN + KO + ["zzzunknownterm bm25"]:
        toks = files.tokenizer(q)
        assert milvus.bm25.ceiling(toks) == pytest.approx(files.bm25.ceiling(toks), rel=1e-9)
        for t in toks:
            assert milvus.bm25.weight(t) == pytest.approx(files.bm25.weight(t), rel=1e-9)


def test_collection_names_and_filter_literals(tmp_path):
    assert collection_names(tmp_path / "docs-v2") == (collection_names(tmp_path / "docs-v2")[0],
                                                     collection_names(tmp_path / "docs-v2")[0] + "_meta")
    name, _ = collection_names(tmp_path / "사내 문서")
    assert name.startswith("rag_") and name.replace("_", "").isalnum() and name.isascii()
    assert collection_names(tmp_path / "a-b")[0] != collection_names(tmp_path / "a_b")[0]
    assert quote('x" or id >= 0 or "') == '"x\\" or id >= 0 or \\""'
    assert glob_regex("docs/*.md").match("docs/a.md") and not glob_regex("docs/*.md").match("docs/a.txt")
    assert glob_regex("[^b]*.md").match("dense.md") and not glob_regex("[^b]*.md").match("bm25.md")


@pytest.fixture
def pair(embedder, corpus_dir, tmp_path):
    """Both backends over a private copy of the corpus (tests change it), with MiniLM."""
    dirs = {b: tmp_path / f"index-{b}" for b in ("files", "milvus")}

    def run(**kw):
        reports = {b: ingest([corpus_dir], d, _settings(b), embedder=embedder, progress=False, **kw)
                   for b, d in dirs.items()}
        rets = {b: build_retriever(_settings(b), d, rerank=False, embedder=embedder) for b, d in dirs.items()}
        return reports, rets

    return corpus_dir, dirs, run


def test_incremental_update_delete_and_prune_follow_the_file_backend(pair):
    corpus, dirs, run = pair
    reports, rets = run()
    assert reports["milvus"].version == 1 and reports["milvus"].chunks_total == 13
    (corpus / "dense.md").write_text("# Dense retrieval\n\nQuokkas encode passages into vectors.\n")
    reports, rets = run()
    for r in reports.values():
        assert (r.updated, r.added, r.version) == (1, 0, 2)
    assert reports["milvus"].chunks_total == reports["files"].chunks_total
    m = rets["milvus"]
    assert m.index.manifest["pending"] is None  # the replaced rows are gone, not only hidden
    for q in ["quokkas encode passages", "dense retrieval embeddings", "how does BM25 score documents"]:
        for mode in ("bm25", "hybrid"):
            assert [c for c, _ in _top(m, q, mode)] == [c for c, _ in _top(rets["files"], q, mode)]
    assert _top(m, "quokkas", "bm25")[0][0] == "dense.md#0"
    toks = m.index.tokenizer("quokka vectors bm25")
    assert m.index.bm25.ceiling(toks) == pytest.approx(rets["files"].index.bm25.ceiling(toks), rel=1e-9)
    assert len(m.index.chunk_ids_of_docs(["dense.md"])) == 1

    reports, rets = run(delete=["fusion.html"])
    assert reports["milvus"].removed == 1 and reports["milvus"].version == 3
    assert not [c for c, _ in _top(rets["milvus"], "fusion of rankings", "bm25") if c.startswith("fusion.html")]
    (corpus / "prompting.txt").unlink()
    reports, rets = run(prune=True)
    assert reports["milvus"].removed == 1 and reports["milvus"].documents_total == reports["files"].documents_total
    assert set(rets["milvus"].index.doc_hashes()) == set(rets["files"].index.doc_hashes())
    assert rets["milvus"].index.documents() == [
        {**d, "ingested_at": m2["ingested_at"]}
        for d, m2 in zip(rets["files"].index.documents(), rets["milvus"].index.documents())]
    unchanged, _ = run()
    assert unchanged["milvus"].version == 4 and not unchanged["milvus"].committed  # nothing changed: no version


def test_filters_become_expressions_and_values_stay_data(pair):
    _, _, run = pair
    _, rets = run()
    m, f = rets["milvus"], rets["files"]
    cases = [Filters(doc_ids=("bm25.md", "dense.md")), Filters(source="*.md"), Filters(source="*fusion*"),
             Filters(metadata=(("topic", "nutrition"),)), Filters(doc_ids=("bm25.md",), source="*.md")]
    for flt in cases:
        assert m.index.allowed_chunk_ids(flt).tolist() == f.index.allowed_chunk_ids(flt).tolist()
        for mode in ("bm25", "dense", "hybrid"):
            assert [c for c, _ in _top(m, "retrieval scoring vitamin", mode, filters=flt)] == \
                [c for c, _ in _top(f, "retrieval scoring vitamin", mode, filters=flt)]
    for evil in ['x" or id >= 0 or "', "nutrition' OR '1'='1", "'; DROP TABLE chunks; --", 'a\\" || true || \\"']:
        flt = Filters(doc_ids=(evil,), metadata=(("topic", evil),))
        assert m.index.allowed_chunk_ids(flt).size == 0
        assert m.search("vitamin", k=5, mode="hybrid", filters=flt).hits == ()
        assert m.index.allowed_chunk_ids(Filters(source=evil)).size == 0
    with pytest.raises(InvalidRequestError, match="unknown metadata"):
        m.index.allowed_chunk_ids(Filters(metadata=(('topic" or "1"=="1', "x"),)))
    assert open_index(m.index.index_dir, _settings("milvus")).manifest["counts"]["chunks"] == 13  # intact


@pytest.mark.parametrize("stage", ["stats", "committed"])
def test_a_writer_killed_mid_write_leaves_one_consistent_version(embedder, corpus_dir, tmp_path, stage):
    index_dir, s = tmp_path / "idx", _settings("milvus")
    ingest([corpus_dir], index_dir, s, embedder=embedder, progress=False)
    (corpus_dir / "bm25.md").write_text("# BM25\n\nWombats weigh terms by inverse document frequency.\n")

    def die(at):
        if at == stage:
            raise KeyboardInterrupt(at)

    with pytest.raises(KeyboardInterrupt):
        ingest([corpus_dir], index_dir, s, embedder=embedder, progress=False, crash_hook=die)
    ix = open_index(index_dir, s)
    ids = ix.chunk_ids_of_docs(["bm25.md"])
    texts = [c.text for c in ix.chunks_by_ids(ids).values()]
    if stage == "committed":  # the commit happened: only the new document is visible (old rows pending)
        assert ix.version == 2 and len(ids) == 1 and "Wombats" in texts[0] and ix.pending
    else:  # not committed: only the old document, no half-applied rows
        assert ix.version == 1 and len(ids) == 3 and not any("Wombats" in t for t in texts)
    r = build_retriever(s, index_dir, rerank=False, embedder=embedder)
    assert len({c for c, _ in _top(r, "bm25 term frequency", "hybrid", k=20)}) == len(
        _top(r, "bm25 term frequency", "hybrid", k=20))
    report = ingest([corpus_dir], index_dir, s, embedder=embedder, progress=False)  # the next writer recovers
    ix = open_index(index_dir, s)
    assert not ix.pending and ix.n_chunks == report.chunks_total == 11
    store = MilvusStore.from_settings(index_dir, s)
    assert store.client.get_collection_stats(store.chunks)["row_count"] == 11


def test_search_and_ask_through_the_api(embedder, corpus_dir, tmp_path):
    index_dir = tmp_path / "api-index"
    s = _settings("milvus", index_dir=index_dir, llm_model="smollm2", llm_context_tokens=2048, max_tokens=32)
    ingest([corpus_dir], index_dir, s, embedder=embedder, progress=False)
    with TestClient(create_app(s)) as client:
        ready = client.get("/readyz").json()
        assert ready["ready"] and ready["chunks"] == 13 and ready["index_version"] == 1
        hits = client.post("/search", json={"query": "What does k1 control in BM25?", "top_k": 3}).json()["hits"]
        assert hits[0]["doc_id"] == "bm25.md"
        client.app.state.engine.generator = ScriptedLLM(["k1 controls term-frequency ", "saturation [1]."])
        body = client.post("/ask", json={"question": "What does the parameter k1 control in BM25?"}).json()
        assert not body["refused"] and body["citations"][0]["doc_id"] == "bm25.md"
        gated = client.post("/ask", json={"question": "Who won the 1954 football world cup final?"}).json()
        assert gated["refused"]
        r = client.post("/documents", json={"documents": [{"id": "new.md", "text": "Axolotls regrow limbs."}]})
        assert r.status_code in (200, 201, 202), r.text
        assert client.post("/search", json={"query": "axolotls regrow", "top_k": 1}).json()["hits"][0]["doc_id"] == "new.md"
    shutil.rmtree(index_dir, ignore_errors=True)
