"""Sentence windows (a shorter prompt from the sentences that bear on the question) and the
llama.cpp prompt-state cache, with the real analyser, index and tiny model."""

import pytest

from rag.answering.pipeline import AnswerPipeline
from rag.answering.windows import GAP, sentence_window
from rag.config import Settings
from rag.text import Tokenizer, split_sentences
from tests.conftest import ScriptedLLM
from tests.rag.test_answer import retriever  # noqa: F401  (the module's real index fixture)


def words(text: str) -> int:
    return len(text.split())


def test_sentences_split_in_english_korean_and_markdown_lines():
    text = ("# BM25\nBM25 ranks documents, e.g. by term frequency. It uses k1 = 1.2 and 3.5 GB! Then it stops.\n"
            "- a bullet\nBM25는 단어 빈도를 씁니다. 그런데 k1은 무엇일까요? 네 맞습니다")
    got = [text[a:b] for a, b in split_sentences(text)]
    assert got == ["# BM25", "BM25 ranks documents, e.g. by term frequency.", "It uses k1 = 1.2 and 3.5 GB!",
                   "Then it stops.", "- a bullet", "BM25는 단어 빈도를 씁니다.", "그런데 k1은 무엇일까요?", "네 맞습니다"]


TEXT = ("Fusion merges ranked lists. Reciprocal rank fusion was introduced by Cormack in 2009. "
        "It adds one over k plus the rank. The constant k is usually 60. "
        "Convex fusion mixes normalised scores instead. Min-max normalisation maps scores to the unit range. "
        "Both need no training data.")


def window(question: str, budget: int, neighbours: int = 1) -> str:
    tok = Tokenizer()
    return sentence_window(TEXT, tok(question), lambda t: 1.0, tok, words, budget, neighbours)


def test_a_passage_that_fits_is_given_whole():
    assert window("Who introduced reciprocal rank fusion?", budget=200) == TEXT


def test_the_best_matching_sentence_comes_with_its_neighbours_and_gap_markers():
    got = window("What value does the constant k usually take?", budget=25)
    assert got == (f"{GAP} It adds one over k plus the rank. The constant k is usually 60. "
                   f"Convex fusion mixes normalised scores instead. {GAP}")
    assert words(got) <= 25


def test_windows_keep_document_order_and_the_budget():
    got = window("Who introduced reciprocal rank fusion, and what does min-max normalisation do?", budget=40,
                 neighbours=0)
    assert got.index("Cormack") < got.index("Min-max") and words(got) <= 40
    assert "It adds one" not in got and got.endswith(GAP)  # unmatched sentences left out, marked


def test_a_passage_with_no_matching_sentence_keeps_its_opening():
    got = window("Was ist ein Sprachmodell?", budget=12)
    assert got == f"Fusion merges ranked lists. {GAP}"


def test_korean_windows_use_kiwi_sentences_and_morphemes():
    text = ("BM25는 검색 점수 함수입니다. 단어 빈도와 문서 길이를 씁니다. 한국어에서는 형태소 분석이 중요합니다. "
            "조사를 떼어야 같은 단어가 맞춰집니다. 밀집 검색은 임베딩을 씁니다. 두 방법을 섞으면 더 좋습니다.")
    tok = Tokenizer()
    got = sentence_window(text, tok("형태소 분석은 왜 중요한가요?"), lambda t: 1.0, tok, words, 14, 1)
    assert "한국어에서는 형태소 분석이 중요합니다." in got and "두 방법을" not in got and got.startswith(GAP)


def test_the_pipeline_gives_windows_to_the_model_but_cites_the_whole_passage(retriever):  # noqa: F811
    s = Settings(_env_file=None, llm_context_tokens=2048, max_tokens=48, window_tokens=32)
    llm = ScriptedLLM(["k1 controls term frequency saturation [1]."])  # about 3 characters a token
    prep = AnswerPipeline(retriever, llm, s).prepare("What does the parameter k1 control in BM25?")
    whole = AnswerPipeline(retriever, llm, s.model_copy(update={"passage_text": "chunk"})).prepare(
        "What does the parameter k1 control in BM25?")
    assert [h.chunk.chunk_id for h in prep.hits] == [h.chunk.chunk_id for h in whole.hits]
    assert prep.prompt_tokens < whole.prompt_tokens
    user = prep.messages[-1]["content"]
    assert "k1" in user and GAP in user
    answer = AnswerPipeline(retriever, llm, s).answer("What does the parameter k1 control in BM25?")
    assert answer.citations and answer.citations[0].hit.chunk.text == prep.hits[0].chunk.text


@pytest.fixture(scope="module")
def cached_llm():
    from rag.models.generator import LlamaCppGenerator
    from rag.models.gguf import resolve_gguf

    gen = LlamaCppGenerator(str(resolve_gguf("smollm2")), "smollm2", n_ctx=2048, threads=2, batch=128, cache_mb=256)
    gen.load()
    return gen


def test_a_saved_prompt_state_is_restored_for_a_prompt_with_the_same_prefix(cached_llm, smollm2):
    from rag.types import GenParams

    system = {"role": "system", "content": "You answer questions about search engines in one sentence. " * 8}
    ask = [system, {"role": "user", "content": "What is BM25?"}]
    other = [{"role": "system", "content": "You translate English to French."}, {"role": "user", "content": "Hi"}]
    again = [system, {"role": "user", "content": "What is FAISS?"}]
    params = GenParams(temperature=0.0, max_tokens=12, seed=0)
    llm = cached_llm._llm
    loads = []
    real_load = llm.load_state
    llm.load_state = lambda state: (loads.append(len(state.input_ids)), real_load(state))[1]
    try:
        for messages in (ask, other):
            "".join(cached_llm.stream(messages, params))
        restored = "".join(cached_llm.stream(again, params))
    finally:
        del llm.load_state
    assert loads and loads[-1] > 60  # the first prompt's state (its system prompt and more) came back
    assert restored == "".join(smollm2.stream(again, params))  # and the answer is what a cold model says
    held = cached_llm.cache_bytes()  # what /metrics reports as rag_llm_prompt_cache_bytes
    assert 0 < held <= 256 << 20 and held == sum(s.llama_state_size for s in llm.cache.cache_state.values())
