"""Follow-up questions: when a question is rewritten, what the rewrite and the answer see."""

import pytest

from rag.answering.conversation import bounded, clean_rewrite, history_block, needs_rewrite, strip_citations
from rag.answering.pipeline import AnswerPipeline
from rag.config import Settings
from rag.types import Turn
from tests.conftest import SampledLLM

HISTORY = [Turn("user", "What is reciprocal rank fusion?"),
           Turn("assistant", "It merges ranked lists by summing 1/(k + rank) [1][2].")]
KO_HISTORY = [Turn("user", "BM25에서 k1은 무엇을 조절하나요?"), Turn("assistant", "k1은 단어 빈도의 포화를 조절합니다 [1].")]


@pytest.mark.parametrize("question, history, expected", [
    ("What is reciprocal rank fusion?", [], False),                       # a first question: never
    ("When was it introduced?", HISTORY, True),                           # a pronoun
    ("What about its second parameter?", HISTORY, True),
    ("And dense retrieval?", HISTORY, True),                              # too short to stand alone
    ("How does HNSW build its graph of vectors in FAISS?", HISTORY, True),  # "its": leans on nothing, still cheap
    ("How does FAISS build an HNSW graph over dense vectors?", HISTORY, False),  # stands alone
    ("그럼 그건 언제 쓰나요?", KO_HISTORY, True),
    ("BM25의 b 매개변수는 문서 길이를 어떻게 정규화하나요?", KO_HISTORY, False),
])
def test_which_questions_are_rewritten(question, history, expected):
    assert needs_rewrite(question, history) is expected
    assert needs_rewrite(question, history, "never") is False
    assert needs_rewrite(question, history, "always") is bool(history)


def test_rewrite_output_is_cleaned_or_falls_back_to_the_conversation():
    q = "When was it introduced?"
    assert clean_rewrite('Query: "When was reciprocal rank fusion introduced?"\nBecause...', q) == \
        "When was reciprocal rank fusion introduced?"
    assert clean_rewrite("검색 질의: BM25 k1은 언제 쓰나요?", "그럼 그건 언제 쓰나요?") == "BM25 k1은 언제 쓰나요?"
    fallback = "What is reciprocal rank fusion? When was it introduced?"
    assert clean_rewrite("   \n  ", q, HISTORY) == fallback  # empty
    assert clean_rewrite("x" * 500, q, HISTORY) == fallback  # implausibly long
    assert clean_rewrite("1998", q, HISTORY) == fallback  # an answer, not a query
    # an answer that repeats the question's words is a statement, not a query
    assert clean_rewrite("Reciprocal rank fusion was introduced in 2009.", q, HISTORY) == fallback
    ko_q = "그걸 계산하는 파이썬 패키지는 뭐예요?"
    assert clean_rewrite("파이썬에서 코헨의 카파를 계산하는 패키지는 `scipy.stats`입니다.", ko_q) == ko_q
    assert clean_rewrite("파이썬에서 코헨의 카파를 계산하는 패키지는 뭐예요?", ko_q) == \
        "파이썬에서 코헨의 카파를 계산하는 패키지는 뭐예요?"
    assert clean_rewrite("France", "Which country received the most refugees?") == \
        "Which country received the most refugees?"  # no history: the question itself
    assert needs_rewrite("And how many ships?", HISTORY)


def test_history_is_bounded_newest_first_and_earlier_citations_are_removed():
    turns = [Turn("user", f"question {i} " + "word " * 40) for i in range(10)] + HISTORY
    kept = bounded(turns, max_turns=6, max_tokens=120, count_tokens=lambda t: len(t.split()))
    assert kept[-1] == Turn("assistant", "It merges ranked lists by summing 1/(k + rank).")
    assert 1 < len(kept) < 6 and [t.content.split()[:2] for t in kept[:-2]] == \
        [t.content.split()[:2] for t in turns[-len(kept):-2]]  # the most recent, in their order
    assert sum(len(t.content.split()) + 4 for t in kept) <= 120
    assert bounded(turns, 0, 1000, len) == []
    assert strip_citations("A [1], b [2, 3].") == "A, b."
    block = history_block(kept, "en")
    assert block.startswith("Conversation so far (context only") and "not a source" in block


class _Retriever:
    """Delegates to the real retriever and records the queries it was asked."""

    def __init__(self, real):
        self.real, self.queries = real, []
        self.index, self.embedder, self.reranker = real.index, real.embedder, real.reranker

    def search(self, query, **kw):
        self.queries.append(query)
        return self.real.search(query, **kw)


@pytest.fixture
def retriever(embedder, fixture_index):
    from rag.index import Index
    from rag.retrieval.retriever import HybridRetriever

    return _Retriever(HybridRetriever(Index.open(fixture_index), embedder, Settings(_env_file=None)))


def test_a_follow_up_is_searched_as_its_rewrite_and_answered_with_the_history(retriever, smollm2):
    llm = SampledLLM(["Reciprocal rank fusion k constant value", "The constant k is usually 60 [1]."],
                     smollm2.count_tokens)
    pipe = AnswerPipeline(retriever, llm, Settings(_env_file=None, llm_context_tokens=2048, max_tokens=48))
    messages = []
    real_stream = llm.stream
    llm.stream = lambda m, p: (messages.append(m), real_stream(m, p))[1]
    answer = pipe.answer("What value of it is usual?", history=HISTORY)
    assert retriever.queries == ["Reciprocal rank fusion k constant value"]
    assert answer.query == "Reciprocal rank fusion k constant value" and answer.rewritten
    assert not answer.refused and answer.citations and answer.timings_ms["rewrite"] > 0
    rewrite_prompt, answer_prompt = messages
    assert "What is reciprocal rank fusion?" in rewrite_prompt[-1]["content"]
    user = answer_prompt[-1]["content"]
    assert user.startswith("Conversation so far") and "[1][2]" not in user  # earlier citations removed
    # the reader is asked the standalone rewrite, which names what "it" is
    assert user.index("Conversation so far") < user.index("<passage") < user.index(
        "Question: Reciprocal rank fusion k constant value")


def test_the_reader_can_be_shown_the_follow_up_as_typed(retriever, smollm2):
    llm = SampledLLM(["Reciprocal rank fusion k constant value", "The constant k is usually 60 [1]."],
                     smollm2.count_tokens)
    settings = Settings(_env_file=None, llm_context_tokens=2048, max_tokens=48, reader_question="typed")
    pipe = AnswerPipeline(retriever, llm, settings)
    messages = []
    real_stream = llm.stream
    llm.stream = lambda m, p: (messages.append(m), real_stream(m, p))[1]
    answer = pipe.answer("What value of it is usual?", history=HISTORY)
    assert answer.rewritten and "Question: What value of it is usual?" in messages[-1][-1]["content"]
    assert "Question: Reciprocal rank fusion" not in messages[-1][-1]["content"]


def test_a_fallback_query_is_not_put_to_the_reader(retriever, smollm2):
    """When the rewrite answered instead of restating ("1998"), the search query is the previous
    question plus the follow-up: the reader sees the follow-up as typed, not that concatenation."""
    llm = SampledLLM(["1998", "The constant k is usually 60 [1]."], smollm2.count_tokens)
    pipe = AnswerPipeline(retriever, llm, Settings(_env_file=None, llm_context_tokens=2048, max_tokens=48))
    messages = []
    real_stream = llm.stream
    llm.stream = lambda m, p: (messages.append(m), real_stream(m, p))[1]
    answer = pipe.answer("What value of it is usual?", history=HISTORY)
    assert answer.query == "What is reciprocal rank fusion? What value of it is usual?"
    user = messages[-1][-1]["content"]
    assert "Question: What value of it is usual?" in user and "Question: What is reciprocal" not in user


def test_a_first_question_costs_no_rewrite_call(retriever, smollm2):
    llm = SampledLLM(["k1 controls term-frequency saturation [1]."], smollm2.count_tokens)
    pipe = AnswerPipeline(retriever, llm, Settings(_env_file=None, llm_context_tokens=2048, max_tokens=48))
    answer = pipe.answer("What does the parameter k1 control in BM25?")
    assert len(llm.params) == 1 and not answer.rewritten and answer.query == "What does the parameter k1 control in BM25?"
    assert answer.timings_ms["rewrite"] < 1


def test_an_unanswerable_follow_up_is_refused_on_its_own(retriever, smollm2):
    """An earlier answered turn does not let a follow-up skip the gate."""
    llm = SampledLLM(["Who won the 1998 football world cup final", "France won [1]."], smollm2.count_tokens)
    pipe = AnswerPipeline(retriever, llm, Settings(_env_file=None, llm_context_tokens=2048, max_tokens=48))
    answer = pipe.answer("And who won it in 1998?", history=HISTORY)
    assert answer.refused and answer.citations == () and len(llm.params) == 1  # the answer call never happened
