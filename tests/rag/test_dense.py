import numpy as np
import pytest

from rag.index.dense import DenseIndex


def unit(rows):
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_add_remove_search_filter_roundtrip(kind, tmp_path):
    rng = np.random.default_rng(0)
    vecs = unit(rng.normal(size=(200, 16)))
    ids = np.arange(1000, 1200)
    idx = DenseIndex.create(16, kind).updated([], ids, vecs)
    found, scores = idx.search(vecs[5], 3)
    assert found[0] == 1005 and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert list(scores) == sorted(scores, reverse=True)

    smaller = idx.updated([1005, 1006], np.array([5000]), vecs[5:6])
    assert idx.ntotal == 200  # the original is untouched (versions are immutable)
    assert smaller.ntotal == 199 and 1006 not in set(smaller.ids())
    assert smaller.search(vecs[5], 1)[0][0] == 5000

    allowed = np.array([1010, 1020, 1030])
    f_ids, _ = smaller.search(vecs[5], 10, allowed)
    assert set(f_ids) == set(allowed)  # filtered search still returns every allowed match

    smaller.save(tmp_path / "d.faiss")
    again = DenseIndex.load(tmp_path / "d.faiss", kind)
    np.testing.assert_array_equal(again.search(vecs[7], 5)[0], smaller.search(vecs[7], 5)[0])


def test_inner_product_equals_cosine_on_normalised_vectors():
    a = unit([[1, 2, 3], [3, 2, 1]])
    idx = DenseIndex.create(3).updated([], np.array([0, 1]), a)
    q = unit([[1, 2, 2.5]])[0]
    ids, scores = idx.search(q, 2)
    expected = a @ q
    assert ids[0] == int(np.argmax(expected))
    np.testing.assert_allclose(sorted(scores, reverse=True), sorted(expected, reverse=True), rtol=1e-6)


def test_empty_index_search():
    idx = DenseIndex.create(4)
    assert idx.search(np.ones(4, dtype=np.float32), 3)[0].size == 0


def test_bfloat16_embeddings_stay_interchangeable_with_float32(embedder):
    """RAG_EMBED_PRECISION=bf16 (the default 'auto' on CPUs with AVX512-BF16): an index built in one
    precision is searched with queries embedded in the other, so the vectors must agree closely."""
    import numpy as np

    from rag.models.e5_torch import cpu_has_bf16
    from rag.models.embedder import make_embedder

    bf16 = make_embedder("minilm", threads=2, precision="bf16")
    texts = ["BM25 saturates term frequency with k1.", "Reciprocal rank fusion sums 1/(k + rank).",
             "형태소 분석기는 한국어 문장을 형태소로 나눕니다."]
    a, b = embedder.embed_documents(texts), bf16.embed_documents(texts)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    assert (a * b).sum(1).min() > 0.999
    assert float(np.linalg.norm(bf16.embed_query("k1 in BM25"))) == pytest.approx(1.0, abs=1e-3)
    auto = make_embedder("minilm", threads=2, precision="auto")
    auto.load()
    assert auto.precision == ("bf16" if cpu_has_bf16() else "fp32")
    with pytest.raises(Exception, match="precision"):
        make_embedder("minilm", precision="fp8")
