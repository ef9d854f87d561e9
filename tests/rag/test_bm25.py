import json
import random

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from rag.index.bm25 import BM25Index, TermMatrix
from rag.text import Tokenizer


def build(docs, k1=1.5, b=0.75, eps=0.25):
    tm = TermMatrix.empty().updated([], list(range(len(docs))), docs)
    return BM25Index(tm, k1, b, eps)


def assert_parity(docs, queries, k1=1.5, b=0.75, eps=0.25):
    ours = build(docs, k1, b, eps)
    ref = BM25Okapi(docs, k1=k1, b=b, epsilon=eps)
    for q in queries:
        a, r = ours.get_scores(q), np.asarray(ref.get_scores(q))
        denom = np.maximum(np.abs(r), 1e-12)
        assert np.max(np.abs(a - r) / denom * (np.abs(r) > 1e-9)) <= 1e-6, q
        assert np.all(np.abs(a[np.abs(r) <= 1e-9]) <= 1e-9)


def test_hand_computed_scores():
    docs = [["a", "b"], ["b", "c", "c"], ["d"]]
    bm = build(docs, k1=1.5, b=0.75, eps=0.25)
    # N=3, avgdl=2; df(c)=1 -> idf=ln(2.5/1.5); doc1 len 3, tf 2
    idf_c = np.log(2.5) - np.log(1.5)
    w = 2 * 2.5 / (2 + 1.5 * (1 - 0.75 + 0.75 * 3 / 2))
    assert bm.get_scores(["c"])[1] == pytest.approx(idf_c * w, rel=1e-6)
    # df(b)=2 -> idf=ln(1.5/2.5) < 0 -> replaced by eps * mean idf (rank_bm25 rule)
    idfs = {t: np.log(3 - df + 0.5) - np.log(df + 0.5) for t, df in {"a": 1, "b": 2, "c": 1, "d": 1}.items()}
    eps = 0.25 * sum(idfs.values()) / 4
    w_b0 = 1 * 2.5 / (1 + 1.5 * (1 - 0.75 + 0.75 * 2 / 2))
    assert bm.get_scores(["b"])[0] == pytest.approx(eps * w_b0, rel=1e-6)
    # repeated query tokens count twice, unknown ones add nothing
    assert bm.get_scores(["c", "c", "zzz"])[1] == pytest.approx(2 * idf_c * w, rel=1e-6)


def test_parity_random_corpus():
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(300)]
    docs = [[rng.choice(vocab[: rng.randint(5, 300)]) for _ in range(rng.randint(1, 60))] for _ in range(400)]
    queries = [[rng.choice(vocab) for _ in range(rng.randint(1, 8))] for _ in range(40)]
    for k1, b in ((1.5, 0.75), (0.9, 0.4), (1.2, 1.0)):
        assert_parity(docs, queries, k1, b)


def test_parity_on_real_corpus(shared_data):
    """SciFact abstracts with the service tokenizer: identical to rank_bm25.BM25Okapi."""
    tok = Tokenizer()
    with open(shared_data / "scifact" / "corpus.jsonl") as fh:
        rows = [json.loads(line) for _, line in zip(range(1500), fh)]
    docs = tok.tokenize_many([r["title"] + "\n" + r["text"] for r in rows])
    with open(shared_data / "scifact" / "queries.jsonl") as fh:
        queries = tok.tokenize_many([json.loads(line)["text"] for _, line in zip(range(50), fh)])
    assert_parity(docs, queries, 1.2, 0.75)


def test_search_orders_filters_and_skips_zero_scores():
    docs = [["x", "y"], ["x"], ["y", "z"], ["q"], ["r"], ["s"]]
    bm = build(docs)
    ids, scores = bm.search(["x", "z"], 10)
    assert list(scores) == sorted(scores, reverse=True) and 3 not in ids and len(ids) == 3
    ids2, _ = bm.search(["x", "z"], 1)
    assert list(ids2) == [ids[0]]
    allowed = np.array([False, True, False, True, True, True])
    ids3, _ = bm.search(["x", "z"], 10, allowed)
    assert list(ids3) == [1]


def test_incremental_update_equals_fresh_build(tmp_path):
    docs = {10: ["a", "b"], 11: ["b", "c"], 12: ["c", "d", "d"]}
    tm = TermMatrix.empty().updated([], [10, 11, 12], list(docs.values()))
    tm = tm.updated([11], [13], [["e", "a"]])
    tm.save(tmp_path)
    loaded = TermMatrix.load(tmp_path)
    assert "e" in loaded.vocab and list(loaded.row_ids) == [10, 12, 13]
    inc = BM25Index(loaded, 1.2, 0.75)
    fresh = BM25Index(TermMatrix.empty().updated([], [10, 12, 13], [["a", "b"], ["c", "d", "d"], ["e", "a"]]),
                      1.2, 0.75)
    for q in (["a"], ["c", "d"], ["e", "b"]):
        np.testing.assert_allclose(inc.get_scores(q), fresh.get_scores(q), rtol=1e-7)
    # a removed term disappears from the vocabulary once no row holds it
    gone = loaded.updated([13], [], [])
    assert "e" not in gone.vocab


def test_empty_index():
    bm = BM25Index(TermMatrix.empty())
    ids, scores = bm.search(["a"], 5)
    assert ids.size == 0 and scores.size == 0
