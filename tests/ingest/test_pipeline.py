import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import ingest
from rag.errors import EmbedderMismatchError, IncompatibleIndexError, IndexLockedError, InvalidRequestError
from rag.index import Index, current_version_dir
from tests.conftest import ROOT


def run(corpus, index, settings, embedder, **kw):
    return ingest([corpus] if corpus else [], index, settings, embedder=embedder, progress=False, **kw)


def all_chunk_ids(ix: Index) -> list[str]:
    return [r[0] for r in ix._query("SELECT chunk_id FROM chunks")]


def test_first_ingest_builds_both_indexes(corpus_dir, tmp_path, settings, embedder):
    r = run(corpus_dir, tmp_path / "ix", settings, embedder)
    assert (r.added, r.updated, r.unchanged, r.removed, len(r.skipped)) == (8, 0, 0, 0, 0)
    assert r.committed and r.version == 1 and r.chunks_total == r.chunks_added > 0
    ix = Index.open(tmp_path / "ix")
    m = ix.manifest
    assert m["schema_version"] == 1 and m["embedder"]["name"] == "minilm" and m["embedder"]["dim"] == 384
    assert m["tokenizer"]["korean"] == "kiwi" and m["bm25"]["k1"] == settings.bm25_k1
    assert m["counts"] == {"documents": 8, "chunks": r.chunks_total, "vocabulary": m["counts"]["vocabulary"]}
    assert m["languages"]["ko"] >= 2 and m["languages"]["en"] >= 6
    assert ix.dense.ntotal == ix.bm25.n_docs == r.chunks_total
    # both indexes answer, with the real embedder and the manifest's tokenizer
    ids, _ = ix.bm25.search(ix.tokenizer("서울에서 회의"), 3)
    assert ix.chunks_by_ids(ids[:1])[int(ids[0])].doc_id == "ko/bm25-ko.md"
    ids, _ = ix.dense.search(embedder.embed_query("vector similarity search with FAISS graphs"), 1)
    assert ix.chunks_by_ids(ids)[int(ids[0])].doc_id == "dense.md"
    # chunks keep offsets into their documents
    for c in ix.chunks_by_ids(range(m["next_chunk_id"])).values():
        if c.doc_id == "bm25.md":
            assert (corpus_dir / "bm25.md").read_text()[c.start:c.end] == c.text


def test_unchanged_reingest_embeds_nothing_and_commits_nothing(corpus_dir, tmp_path, settings, embedder):
    run(corpus_dir, tmp_path / "ix", settings, embedder)
    calls = []
    real = embedder.embed_documents

    class Counting:  # the real embedder, counting how often ingest asks it to embed
        name, dim, max_tokens, overhead = embedder.name, embedder.dim, embedder.max_tokens, embedder.overhead
        load, count_tokens, embed_query = embedder.load, embedder.count_tokens, embedder.embed_query

        def embed_documents(self, texts, batch_size=32):
            calls.append(len(texts))
            return real(texts, batch_size)

    r = run(corpus_dir, tmp_path / "ix", settings, Counting())
    assert calls == [] and not r.committed and r.unchanged == 8 and r.version == 1
    assert current_version_dir(tmp_path / "ix").name == "v000001"


def test_changed_document_replaces_its_chunks(corpus_dir, tmp_path, settings, embedder):
    first = run(corpus_dir, tmp_path / "ix", settings, embedder)
    (corpus_dir / "dense.md").write_text("# Dense retrieval\n\nColBERT uses late interaction over token vectors.\n")
    (corpus_dir / "new.md").write_text("# New\n\nA brand new page about perplexity.\n")
    r = run(corpus_dir, tmp_path / "ix", settings, embedder)
    assert (r.added, r.updated, r.unchanged, r.removed) == (1, 1, 7, 0) and r.version == 2
    ix = Index.open(tmp_path / "ix")
    ids = all_chunk_ids(ix)
    assert len(ids) == len(set(ids)) == r.chunks_total
    assert r.chunks_total == first.chunks_total - r.chunks_removed + r.chunks_added
    texts = [c.text for c in ix.chunks_by_ids(ix.dense.ids()).values() if c.doc_id == "dense.md"]
    assert texts == ["ColBERT uses late interaction over token vectors."]
    assert ix.bm25.search(ix.tokenizer("HNSW navigable graph"), 5)[0].size == 0  # old text is gone
    assert set(ix.dense.ids()) == set(ix.bm25.row_ids)


def test_prune_and_delete(corpus_dir, tmp_path, settings, embedder):
    run(corpus_dir, tmp_path / "ix", settings, embedder)
    (corpus_dir / "prompting.txt").unlink()
    r = run(corpus_dir, tmp_path / "ix", settings, embedder)
    assert r.removed == 0 and not r.committed  # without --prune nothing is removed
    r = run(corpus_dir, tmp_path / "ix", settings, embedder, prune=True)
    assert r.removed == 1 and r.documents_total == 7
    r = run(None, tmp_path / "ix", settings, embedder, delete=["sci-1", "ko/refusal-ko.md"])
    assert r.removed == 2 and r.documents_total == 5
    ix = Index.open(tmp_path / "ix")
    assert {d["doc_id"] for d in ix.documents()} == {"bm25.md", "dense.md", "fusion.html", "ko/bm25-ko.md", "sci-2"}
    with pytest.raises(InvalidRequestError):
        run(None, tmp_path / "ix", settings, embedder, delete=["no-such-doc"])


def test_embedder_mismatch_is_a_clear_error(corpus_dir, tmp_path, settings, embedder):
    run(corpus_dir, tmp_path / "ix", settings, embedder)
    with pytest.raises(IncompatibleIndexError, match="embedder"):
        run(corpus_dir, tmp_path / "ix", settings.model_copy(update={"embedder": "e5-small"}), None)
    with pytest.raises(IncompatibleIndexError, match="chunking"):
        run(corpus_dir, tmp_path / "ix", settings.model_copy(update={"chunk_tokens": 128}), embedder)
    ix = Index.open(tmp_path / "ix")
    with pytest.raises(EmbedderMismatchError):
        ix.check_embedder("e5-small", 384)
    ix.check_embedder("minilm", 384)
    # --rebuild starts over with the new settings
    r = run(corpus_dir, tmp_path / "ix", settings.model_copy(update={"chunk_tokens": 128}), embedder, rebuild=True)
    assert r.added == 8 and Index.open(tmp_path / "ix").manifest["chunking"]["max_tokens"] == 128


def test_korean_with_multilingual_embedder(corpus_dir, tmp_path, settings, e5_embedder):
    s = settings.model_copy(update={"embedder": "e5-small"})
    run(corpus_dir / "ko", tmp_path / "ix", s, e5_embedder)
    ix = Index.open(tmp_path / "ix")
    ix.check_embedder("e5-small", 384)
    ids, _ = ix.dense.search(e5_embedder.embed_query("환각을 줄이려면 어떻게 해야 하나요?"), 1)
    assert ix.chunks_by_ids(ids)[int(ids[0])].doc_id == "refusal-ko.md"


def test_hnsw_index_supports_incremental_changes(corpus_dir, tmp_path, settings, embedder):
    s = settings.model_copy(update={"dense_index": "hnsw"})
    run(corpus_dir, tmp_path / "ix", s, embedder)
    (corpus_dir / "bm25.md").write_text("# BM25\n\nChanged text about Okapi weighting.\n")
    r = run(corpus_dir, tmp_path / "ix", s, embedder)
    ix = Index.open(tmp_path / "ix")
    assert r.updated == 1 and ix.manifest["dense"]["kind"] == "hnsw"
    assert set(ix.dense.ids()) == set(ix.bm25.row_ids) and ix.dense.ntotal == r.chunks_total


def test_second_writer_fails_fast_while_readers_read(corpus_dir, tmp_path, settings, embedder):
    run(corpus_dir, tmp_path / "ix", settings, embedder)
    (corpus_dir / "more.md").write_text("# More\n\nextra")
    proc = _start_worker(corpus_dir, tmp_path / "ix", "start")
    try:
        _wait_for(proc, "STAGE start")
        with pytest.raises(IndexLockedError, match="being written"):
            run(corpus_dir, tmp_path / "ix", settings, embedder)
        ix = Index.open(tmp_path / "ix")  # readers are not blocked
        assert ix.version == 1 and ix.bm25.search(ix.tokenizer("BM25"), 1)[0].size == 1
    finally:
        proc.kill()
        proc.wait()
    run(corpus_dir, tmp_path / "ix", settings, embedder)  # the kernel released the dead writer's lock


def test_a_writer_told_to_wait_commits_once_the_other_is_done(corpus_dir, tmp_path, settings, embedder):
    import threading

    from rag.index.lock import IndexLock

    run(corpus_dir, tmp_path / "ix", settings, embedder)
    (corpus_dir / "more.md").write_text("# More\n\nextra")
    held = IndexLock(tmp_path / "ix").__enter__()  # another writer, released a second later
    threading.Timer(1.0, held.__exit__, (None, None, None)).start()
    stages = []
    report = run(corpus_dir, tmp_path / "ix", settings, embedder, lock_wait_s=30,
                 on_progress=lambda stage, done, total: stages.append(stage))
    assert report.committed and report.added == 1 and "waiting for the index lock" in stages


def _start_worker(corpus, index, stage):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "tests.ingest.crash_worker", str(corpus), str(index), stage],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)


def _wait_for(proc, line, timeout=120):
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for got in proc.stdout:
            if got.strip() == line:
                return
        raise AssertionError(f"worker ended before printing {line!r}")
    finally:
        timer.cancel()


@pytest.mark.parametrize("stage", ["embedding", "start", "sqlite", "bm25", "dense", "fsync", "renamed", "committed"])
def test_kill_9_at_any_stage_leaves_a_loadable_index(stage, corpus_dir, tmp_path, settings, embedder):
    index = tmp_path / "ix"
    run(corpus_dir, index, settings, embedder)
    before = Index.open(index)
    n_before = before.n_chunks
    (corpus_dir / "bm25.md").write_text("# BM25\n\nRewritten: saturation and length normalisation.\n")
    (corpus_dir / "extra.md").write_text("# Extra\n\n" + "Another paragraph about ranking.\n\n" * 5)
    proc = _start_worker(corpus_dir, index, stage)
    _wait_for(proc, f"STAGE {stage}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ix = Index.open(index)  # always loadable: the old version, or the new one if it was committed
    if stage == "committed":
        assert ix.version == 2 and ix.n_chunks != n_before
    else:
        assert ix.version == 1 and ix.n_chunks == n_before
        assert ix.dense.ntotal == ix.bm25.n_docs == n_before
        q = ix.tokenizer("saturation length")
        assert ix.bm25.search(q, 3)[0].size > 0
    # the next ingest recovers, cleans leftovers and ends with exactly one copy of each chunk
    r = run(corpus_dir, index, settings, embedder)
    assert (r.committed or stage == "committed") and r.skipped == []
    ix = Index.open(index)
    ids = all_chunk_ids(ix)
    assert len(ids) == len(set(ids))
    assert not list(Path(index).glob(".tmp-*"))
    assert {d["doc_id"] for d in ix.documents()} >= {"extra.md", "bm25.md"}
    np.testing.assert_array_equal(np.sort(ix.dense.ids()), np.sort(ix.bm25.row_ids))


def test_auto_embedder_follows_the_corpus_languages(corpus_dir, tmp_path, settings):
    from ingest.pipeline import choose_embedder
    from rag.types import Document

    en = [Document(f"e{i}", "plain English text about retrieval") for i in range(9)]
    ko = [Document("k", "서울은 대한민국의 수도이다")]
    assert choose_embedder(en + ko) == "minilm"  # 10 %: not over the threshold
    assert choose_embedder(en[:4] + ko) == "e5-small"
    assert choose_embedder([]) == "minilm"
    auto = settings.model_copy(update={"embedder": "auto"})
    r = ingest([corpus_dir / "bm25.md"], tmp_path / "en", auto, progress=False)
    assert Index.open(tmp_path / "en").embedder_name == "minilm" and r.added == 1
    # an existing index keeps its embedder whatever new documents arrive
    r = ingest([corpus_dir / "ko"], tmp_path / "en", auto, progress=False)
    assert r.added == 2 and Index.open(tmp_path / "en").embedder_name == "minilm"


def _open_files_under(path: Path) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)):
            out.append(target)
    return out


def test_a_replaced_version_releases_its_files_once_unused(corpus_dir, tmp_path, settings, embedder):
    """A long-running server swaps in a new version at every write: the replaced ones must not keep
    their files open (nor their memory) until some later full garbage collection."""
    import gc

    index_dir = tmp_path / "idx"
    ingest([corpus_dir], index_dir, settings, embedder=embedder, progress=False)
    gc.disable()  # prove the files are released without the cycle collector
    try:
        for rev in range(4):
            live = Index.open(index_dir)
            live.bm25.ceiling(live.tokenizer("fusion"))
            del live
            (corpus_dir / "extra.md").write_text(f"# Extra\n\nRevision {rev} of a note on fusion.\n")
            ingest([corpus_dir], index_dir, settings, embedder=embedder, progress=False)
        assert _open_files_under(index_dir) == []
        kept = Index.open(index_dir)
        assert [Path(f).parent.name for f in _open_files_under(index_dir)] == [kept.path.name]
        kept.close()
        kept.close()  # closing twice is harmless
        assert _open_files_under(index_dir) == []
    finally:
        gc.enable()
