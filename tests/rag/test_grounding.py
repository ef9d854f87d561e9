"""The grounding check: every answer sentence against the passages it cites (real analyser, real
index; the LLM replays fixed answers, since what is checked is the service's handling of them)."""

import pytest

from rag.answering.grounding import REFUSAL_REASON, Thresholds, check, has_substance, render, sentences_with_citations
from rag.answering.pipeline import AnswerPipeline
from rag.config import Settings
from rag.text import Tokenizer
from tests.conftest import ScriptedLLM
from tests.rag.test_answer import retriever  # noqa: F401  (the module's real index fixture)

TOK = Tokenizer()
PASSAGES = ["LLM을 고를 때는 라이선스, 비용, 지연 시간, 컨텍스트 길이를 비교합니다. 오픈 소스 모델은 직접 호스팅할 수 있습니다.",
            "The Horizontal Pod Autoscaler scales pods on CPU utilisation by default."]


def test_sentences_take_their_own_markers_or_the_next_ones():
    got = sentences_with_citations("BM25 ranks by terms. It saturates tf [2]. Dense search embeds [1][3].")
    assert got == [("BM25 ranks by terms.", (2,)), ("It saturates tf.", (2,)), ("Dense search embeds.", (1, 3))]


def test_a_korean_claim_its_cited_passage_does_not_state_is_unsupported():
    (g,) = check("Kubernetes에서 HPA는 CPU 사용률을 기준으로 파드를 늘리거나 줄입니다 [1].",
                 "Kubernetes에서 HPA는 어떤 지표로 파드를 늘리나요?", PASSAGES[:1], TOK, Thresholds(0.5))
    assert not g.supported and g.lexical == 0.0 and g.cited == (1,)
    assert render([g], keep_unsupported=False) == ("", []) and not has_substance([g])


def test_a_claim_is_re_cited_to_the_passage_that_states_it():
    (g,) = check("It scales on CPU utilisation [1].", "What does the autoscaler scale pods on?", PASSAGES, TOK,
                 Thresholds(0.5))
    assert g.supported and g.cited == (2,) and g.lexical == 1.0
    assert render([g], keep_unsupported=False) == ("It scales on CPU utilisation [2].", [2])


def test_terms_scattered_over_a_passage_do_not_support_a_claim():
    passage = ("Release 7 added new quantisation types. Q4_K_M keeps most of the quality. A small model needs 4 GB. "
               "Smaller types lose more. Each weight costs some bits.")
    q = "How many bits per weight does Q5_K_M use?"
    (g,) = check("Q5_K_M uses 7 bits per weight [1].", q, [passage], TOK, Thresholds(0.4))
    assert not g.supported  # "7" and "bits" are there, but not where the passage speaks of Q5_K_M
    (ok,) = check("Q5_K_M uses 5.7 bits per weight [1].", q, [passage + " Q5_K_M uses about 5.7 bits per weight."],
                  TOK, Thresholds(0.4))
    assert ok.supported and ok.lexical == 1.0


def test_a_sentence_that_only_restates_the_question_is_no_claim():
    (g,) = check("LLM을 고를 때 비교합니다 [1].", "LLM을 고를 때 무엇을 비교하나요?", PASSAGES, TOK, Thresholds(0.5))
    assert g.supported and not g.substantive and not has_substance([g])


def test_enforce_drops_the_unsupported_sentence_and_keeps_the_rest():
    checks = check("Open models can be self-hosted [2]. They cost nothing at 8000 tokens per second [2].",
                   "Can open models be hosted?", ["Open source models can be self-hosted by the user.",
                                                  "Other text."], TOK, Thresholds(0.5))
    assert [g.supported for g in checks] == [True, False]
    assert render(checks, keep_unsupported=False) == ("Open models can be self-hosted [1].", [1])
    assert render(checks, keep_unsupported=True)[0].endswith("per second [2].")


def test_the_learned_score_rescues_a_paraphrase_only_when_it_is_on():
    scorer = lambda sentence, passages: [0.9 if "utilisation" in p else 0.1 for p in passages]  # noqa: E731
    q = "What does the autoscaler scale on?"
    (off,) = check("Processor load drives it [2].", q, PASSAGES, TOK, Thresholds(0.5), scorer)
    (on,) = check("Processor load drives it [2].", q, PASSAGES, TOK, Thresholds(0.5, 0.8), scorer)
    assert not off.supported and off.learned is None
    assert on.supported and on.learned == 0.9 and on.cited == (2,)


@pytest.mark.parametrize("mode, refused", [("enforce", True), ("flag", False), ("off", False)])
def test_the_pipeline_refuses_or_flags_an_answer_from_outside_knowledge(retriever, mode, refused):  # noqa: F811
    claim = "Kubernetes autoscales pods on memory pressure every fifteen seconds [1]."
    s = Settings(_env_file=None, llm_context_tokens=2048, max_tokens=48, grounding=mode)
    answer = AnswerPipeline(retriever, ScriptedLLM([claim]), s).answer("What does the parameter k1 control in BM25?")
    assert answer.refused is refused
    if mode == "off":
        assert answer.grounding == () and answer.text == claim
    else:
        (g,) = answer.grounding
        assert not g.supported and g.sentence.startswith("Kubernetes autoscales")
        assert "grounding" in answer.timings_ms
    if refused:
        assert answer.refusal_reason == REFUSAL_REASON and answer.citations == ()
    elif mode == "flag":
        assert answer.text == claim and [c.n for c in answer.citations] == [1]


def test_a_supported_answer_passes_unchanged(retriever):  # noqa: F811
    s = Settings(_env_file=None, llm_context_tokens=2048, max_tokens=48)
    llm = ScriptedLLM(["k1 controls term frequency saturation [1]."])
    answer = AnswerPipeline(retriever, llm, s).answer("What does the parameter k1 control in BM25?")
    assert not answer.refused and answer.text == "k1 controls term frequency saturation [1]."
    (g,) = answer.grounding
    assert g.supported and g.lexical >= 0.5 and answer.citations[0].hit.chunk.doc_id == "bm25.md"
