import pytest

from rag.retrieval.fusion import convex, normalize, ranked, rrf


def test_rrf_hand_computed():
    fused = rrf([["a", "b", "c"], ["b", "d"]], k=60)
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["c"] == pytest.approx(1 / 63)
    assert fused["d"] == pytest.approx(1 / 62)
    assert ranked(fused) == ["b", "a", "d", "c"]


def test_rrf_weights_and_k():
    fused = rrf([["a"], ["b"]], k=1, weights=[1.0, 3.0])
    assert fused == {"a": pytest.approx(0.5), "b": pytest.approx(1.5)}
    with pytest.raises(ValueError):
        rrf([["a"]], weights=[1, 2])


def test_minmax_and_zscore():
    assert normalize({"a": 2.0, "b": 4.0, "c": 3.0}) == {"a": 0.0, "b": 1.0, "c": 0.5}
    assert normalize({"a": 5.0}) == {"a": 1.0}
    z = normalize({"a": 1.0, "b": 3.0}, "zscore")
    assert z == {"a": pytest.approx(-1.0), "b": pytest.approx(1.0)}
    assert normalize({}, "zscore") == {}
    with pytest.raises(ValueError):
        normalize({"a": 1.0}, "rank")


def test_convex_hand_computed_with_missing_candidates():
    bm25 = {"a": 10.0, "b": 6.0, "c": 2.0}  # minmax: a 1, b 0.5, c 0
    dense = {"b": 0.9, "d": 0.5}  # minmax: b 1, d 0
    fused = convex([bm25, dense], [0.3, 0.7])
    assert fused["a"] == pytest.approx(0.3 * 1 + 0.7 * 0)  # missing from dense: its floor, 0
    assert fused["b"] == pytest.approx(0.3 * 0.5 + 0.7 * 1)
    assert fused["c"] == pytest.approx(0.0)
    assert fused["d"] == pytest.approx(0.0)
    assert ranked(fused)[0] == "b"


def test_convex_zero_weight_ignores_a_list():
    fused = convex([{"a": 1.0, "b": 2.0}, {"a": 9.0, "c": 1.0}], [1.0, 0.0])
    assert ranked(fused)[:1] == ["b"]
