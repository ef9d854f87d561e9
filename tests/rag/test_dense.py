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
