"""Answer-eval scoring (hand-computed) and `rag eval answers` end to end with the real tiny LLM."""

import json

import numpy as np
import pytest

from eval.answers import (
    Record,
    contains_gold,
    exact_match,
    f1_score,
    load_qa,
    normalize_answer,
    rouge_l,
    select,
    strip_citations,
    summarize,
)
from eval.calibrate_gate import choose, pass_rate
from rag.datasets import part_of
from tests.conftest import FIXTURES
from tests.test_cli import rag

TINY = FIXTURES / "qa" / "tiny-squad.json"


def test_official_normalisation_and_token_f1():
    assert normalize_answer("The Cat, sat!  On a mat.") == "cat sat on mat"
    # pred tokens cat sat on mat (articles dropped) vs cat on mat: P 3/4, R 1 -> F1 6/7
    assert f1_score("the cat sat on the mat", "cat on mat") == pytest.approx(6 / 7)
    assert f1_score("dog", "cat") == 0.0
    assert exact_match("The Normans.", "normans") == 1.0


def test_korean_scores_characters_as_korquad_does():
    # 1989년에 (6 chars) vs 1989년 (5 chars): 5 shared -> P 5/6, R 1 -> F1 10/11
    assert f1_score("1989년에", "1989년", "ko") == pytest.approx(10 / 11)
    assert normalize_answer("《노인과 바다》", "ko") == "노인과 바다"
    assert contains_gold("그 책은 노인과바다 입니다 [1].", "노인과 바다", "ko")
    assert rouge_l("알마 루드가 지었다", ["알마 루드"], "ko") > 0.5  # Hangul is not dropped


def test_contains_gold_respects_word_boundaries_and_citations():
    answer = strip_citations("Normandy is a region in France [1][2].")
    assert answer == "Normandy is a region in France."
    assert contains_gold(answer, "France") and not contains_gold(answer, "Fran")
    assert not contains_gold("Frances was born", "France")


def test_summary_rates_on_their_own_populations():
    recs = [Record("a", False, False, None, True, ["d1"], "d1", em=1.0, f1=1.0, contains=True, ttft_ms=100,
                   generate_ms=1100, tokens=11),
            Record("b", False, False, None, True, ["d2", "d1"], "d1", f1=0.5, contains=False, ttft_ms=300,
                   generate_ms=1300, tokens=21),
            Record("c", False, True, "model", False, [], "d3"),
            Record("d", True, True, "gate", False, [], "d4"),
            Record("e", True, False, None, False, ["d5"], "d5")]
    m = summarize(recs, [("x", ["x"]), ("y z", ["y"])])
    assert (m["answerable"], m["unanswerable"]) == (3, 2)
    assert m["exact_match"] == 0.5 and m["f1"] == 0.75          # over the 2 answered answerable
    assert m["exact_match_all_answerable"] == pytest.approx(0.3333, abs=1e-4)
    assert m["contains_gold"] == 0.5
    assert m["false_refusal"] == pytest.approx(0.3333, abs=1e-4)
    assert m["unanswerable_refused"] == 0.5 and m["refusal_precision"] == 0.5
    assert m["citation_accuracy"] == 1.0                       # both answered cite d1 among others
    assert m["citation_precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert (m["refused_by_gate"], m["refused_by_model"]) == (1, 1)
    assert m["tokens_per_s"]["p50"] == 15.0                    # (10/1 s + 20/1 s) / 2
    assert m["ttft_ms"]["p50"] in (100, 300)


def test_load_qa_matches_the_beir_ids_and_splits_by_article():
    name, docs, items = load_qa(TINY)
    assert name == "qa" and [d.doc_id for d in docs] == ["tinysquad-00-000", "tinysquad-00-001"]
    assert {i.qid: i.impossible for i in items} == {"q1": False, "q2": False, "q3": True, "q4": False}
    assert items[0].answers == ("Alma Rudd",) and items[2].answers == ()
    parts = {p: [i.qid for i in select(items, p)] for p in ("heldout", "dev", "train")}
    assert sorted(q for qids in parts.values() for q in qids) == ["q1", "q2", "q3", "q4"]  # each in one part
    assert [p for p, qids in parts.items() if qids] == [part_of("article:tinysquad-00")]  # one article, one part
    assert len(select(items, "all", limit=2)) == 2


def test_gate_threshold_choice_meets_the_out_of_corpus_target():
    inside = np.array([[0.6, 0.1], [0.5, 0.9], [0.3, 0.7], [0.45, 0.2]])
    ooc = np.array([[0.2, 0.8], [0.25, 0.1], [0.1, 0.05]])
    d, b = choose([inside], ooc, ooc_refused=1.0)
    assert 1 - pass_rate(ooc, d, b) == 1.0
    # Any dense threshold in 0.26..0.30 passes all four; the largest (most margin) wins, and BM25
    # must stay above the out-of-corpus 0.8 (here: switched off, 1.01).
    assert pass_rate(inside, d, b) == 1.0 and d == pytest.approx(0.30) and b > 0.8


def test_per_language_bm25_threshold_keeps_the_dense_one_fixed():
    # Korean questions on a MiniLM index: no dense signal (NaN), BM25 ratios on a lower scale.
    inside = np.array([[np.nan, 0.35], [np.nan, 0.31], [np.nan, 0.5], [np.nan, 0.2]])
    ooc = np.array([[np.nan, 0.28], [np.nan, 0.1], [np.nan, 0.25]])
    d, b = choose([inside], ooc, ooc_refused=1.0, dense=0.38)
    # BM25 must rise above the out-of-corpus 0.28; the largest threshold passing the same three wins.
    assert d == 0.38 and b == pytest.approx(0.31) and pass_rate(inside, d, b) == 0.75
    assert pass_rate(ooc, d, b) == 0.0


@pytest.mark.slow
def test_eval_answers_end_to_end_with_smollm2(tmp_path):
    out = tmp_path / "answers.json"
    r = rag("eval", "answers", "--dataset", TINY, "--part", "all", "--out", out, "--index", tmp_path / "idx",
            "--model", "smollm2", "--embedder", "minilm", "--no-rerank", "-q", "--set", "max_tokens=48",
            "--judge", "smollm2", env={"RAG_LLM_CONTEXT_TOKENS": "2048"})
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    m = result["metrics"]
    assert (m["questions"], m["answerable"], m["unanswerable"]) == (4, 3, 1)
    assert m["refused_by_gate"] + m["refused_by_model"] == sum(rec["refused"] for rec in result["records"])
    assert all(rec["answer"] is not None for rec in result["records"])  # SQuAD texts may be kept
    answered = [rec for rec in result["records"] if not rec["refused"]]
    assert all(rec["ttft_ms"] > 0 and rec["tokens"] > 0 for rec in answered)
    assert "| unanswerable refused" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").stat().st_size > 1000
    assert result["settings"]["max_tokens"] == 48
    judge = m["judges"]["smollm2"]  # the tiny model as its own judge: plumbing, not quality
    assert judge["judged"] == 4 and judge["rubric"] == "judge-v2"
    assert all(set(rec["judged"]["smollm2"]) >= {"faithful", "correct", "refusal_right"} for rec in result["records"])
    assert judge["vs_refusal_gold"]["n"] + judge["vs_refusal_gold"]["unparsed"] == 4
    assert "LLM judges" in out.with_suffix(".md").read_text()


def test_eval_answers_rejects_an_unknown_setting_override(tmp_path):
    r = rag("eval", "answers", "--dataset", TINY, "--out", tmp_path / "a.json", "--set", "no_such_setting=1")
    assert r.returncode != 0 and "--set expects KEY=VALUE" in r.stderr
    r = rag("eval", "answers", "--dataset", TINY, "--out", tmp_path / "a.json", "--set", "context_passages=many")
    assert r.returncode != 0 and "context_passages" in r.stderr
    assert not (tmp_path / "a.json").exists()


def test_rerank_gate_simulation_refuses_below_the_threshold_only():
    from eval.answers import with_rerank_gate

    recs = [Record("a", False, False, None, True, ["d1"], "d1", f1=1.0, contains=True, gate={"rerank_max": 2.0}),
            Record("b", False, False, None, True, ["d2"], "d2", f1=0.5, contains=True, gate={"rerank_max": -1.0}),
            Record("c", True, False, None, False, ["d3"], "d4", gate={"rerank_max": -2.0}),
            Record("d", True, True, "gate", False, [], "d5", gate={"rerank_max": None})]
    out = with_rerank_gate(recs, 0.0)
    assert [(r.refused, r.refused_by) for r in out] == [(False, None), (True, "gate"), (True, "gate"),
                                                       (True, "gate")]
    assert out[1].cited_docs == [] and out[1].f1 == 0.0 and out[0] is recs[0]
    m = summarize(out, [])
    assert m["false_refusal"] == 0.5 and m["unanswerable_refused"] == 1.0 and m["contains_gold"] == 1.0
    assert summarize(with_rerank_gate(recs, -5.0), [])["false_refusal"] == 0.0


def test_min_agreement_simulation_refuses_low_agreement_answers_only():
    from eval.answers import with_min_agreement

    recs = [Record("a", False, False, None, True, ["d1"], "d1", contains=True, agreement=0.9),
            Record("b", True, False, None, True, ["d2"], "d2", agreement=0.2),
            Record("c", True, True, "model", True, [], "d3", agreement=None)]
    out = with_min_agreement(recs, 0.5)
    assert [(r.refused, r.refused_by) for r in out] == [(False, None), (True, "model"), (True, "model")]
    assert out[1].agreement == 0.2 and summarize(out, [])["unanswerable_refused"] == 1.0


def test_roc_auc_by_hand():
    from eval.probe_answerability import roc_auc

    assert roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert roc_auc([0.1], [0.9]) == 0.0
    assert roc_auc([0.5, 0.9], [0.5]) == 0.75  # one tie (half) + one win, over 2 pairs
    assert roc_auc([], [0.3]) is None
