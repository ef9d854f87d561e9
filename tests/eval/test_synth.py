"""Generated test sets (eval.synth) and the LLM judge (eval.judge): parsing and filtering on
hand-written replies, sampling on the fixture index, generation and resumption with the real tiny
model, and the CLI that writes a BEIR set the other evals read."""

import json
import math

import pytest

from eval.answers import load_qa
from eval.judge import agreement, cohen_kappa, judge_answer
from eval.synth import (
    Deduper,
    SynthConfig,
    Task,
    answer_in_passage,
    check,
    check_resume,
    copies_passage,
    finalize,
    parse_reply,
    parse_verdict,
    plan,
    rebuild_text,
    run,
    sample_chunks,
)
from rag.datasets import load_beir
from rag.index import Index
from rag.types import Chunk
from tests.test_cli import rag

PASSAGE = ("The Eiffel Tower was completed in 1889 for the World's Fair in Paris. It is 330 metres tall and was "
           "the tallest man-made structure in the world for 41 years.")


def test_replies_parse_in_english_korean_markdown_and_bare_form():
    assert parse_reply("Question: When was the tower finished?\nAnswer: 1889") == ("When was the tower finished?", "1889")
    assert parse_reply("**Question:** How tall is it?\n**Answer:** 330 metres") == ("How tall is it?", "330 metres")
    assert parse_reply("질문: 탑은 언제 완공되었나요?\n답: 1889년") == ("탑은 언제 완공되었나요?", "1889년")
    assert parse_reply("Sure! What city is the tower in?") == ("Sure! What city is the tower in?", None)
    assert parse_reply("The passage does not say.") == (None, None)


def test_judge_yes_no_in_both_languages_and_unclear_replies():
    assert parse_verdict("Yes.") is True and parse_verdict("no, it does not") is False
    assert parse_verdict("예") is True and parse_verdict("아니오") is False
    assert parse_verdict("Maybe") is None and parse_verdict("yes and no") is None


def test_filters_drop_copies_foreign_answers_and_wrong_language():
    task = Task("1:a", "answerable", 1, "d", "en", PASSAGE)
    copied = "The Eiffel Tower was completed in 1889 for the World's Fair in Paris?"
    assert copies_passage(copied, PASSAGE) and not copies_passage("When was the Paris tower finished?", PASSAGE)
    assert answer_in_passage("in 1889", PASSAGE) and not answer_in_passage("Gustave Eiffel", PASSAGE)
    assert check(task, "When was the Paris tower finished?", "1889") is None
    assert check(task, copied, "1889") == "copies_passage"
    assert check(task, "Who designed the tower?", "Gustave Eiffel") == "answer_not_in_passage"
    assert check(task, "탑은 언제 완공되었나요?", "1889") == "language"
    assert check(task, None, None) == "unparsed"
    near = Task("1:u", "unanswerable", 1, "d", "en", PASSAGE)
    assert check(near, "Who designed the tower's lifts?", None) is None  # no answer needed


def test_near_duplicates_are_dropped_in_any_script():
    d = Deduper()
    assert d.add("When was the Eiffel Tower completed?")
    assert not d.add("When was the Eiffel tower completed")
    assert d.add("How tall is the Eiffel Tower?")
    assert d.add("에펠탑은 언제 완공되었나요?") and not d.add("에펠탑은 언제 완공되었나요")


def test_document_text_is_rebuilt_from_overlapping_chunk_spans():
    text = "alpha beta gamma delta epsilon"
    chunks = [Chunk("c2", "d", text[11:30], start=11, end=30), Chunk("c1", "d", text[0:16], start=0, end=16)]
    assert rebuild_text(chunks) == text


def test_sampling_spreads_over_documents_and_repeats_with_the_seed(fixture_index):
    index = Index.open(fixture_index)
    docs = {d["doc_id"] for d in index.documents()}
    picked = sample_chunks(index, len(docs), seed=3, min_chars=50)
    assert len({c.doc_id for _, c in picked}) == len(picked)  # one chunk per document first
    assert [cid for cid, _ in picked] == [cid for cid, _ in sample_chunks(index, len(docs), seed=3, min_chars=50)]
    assert [cid for cid, _ in picked] != [cid for cid, _ in sample_chunks(index, len(docs), seed=4, min_chars=50)]
    assert all(len(c.text) >= 50 for _, c in picked)
    tasks = plan(index, SynthConfig(n=4, unanswerable=1.0, min_chars=50))
    assert [t.kind for t in tasks] == ["answerable", "unanswerable"] * 4
    assert {t.lang for t in tasks} <= {"en", "ko"}


class Counting:
    """The real tiny model, counting the calls made through it (to see what a resume repeats)."""

    def __init__(self, generator):
        self.inner, self.name, self.calls = generator, generator.name, 0

    def stream(self, messages, params):
        self.calls += 1
        return self.inner.stream(messages, params)

    def count_tokens(self, text):
        return self.inner.count_tokens(text)


def test_generation_resumes_without_repeating_finished_items(fixture_index, smollm2, tmp_path):
    index = Index.open(fixture_index)
    config = SynthConfig(n=3, unanswerable=0.0, min_chars=50, max_tokens=32)
    tasks = plan(index, config)
    gen = Counting(smollm2)
    first = []
    for item in run(tasks, gen, gen, config, tmp_path, progress=False):
        first.append(item)
        break  # interrupted after one item
    calls_before = gen.calls
    items = list(run(tasks, gen, gen, config, tmp_path, progress=False))
    assert [i["key"] for i in items] == [t.key for t in tasks]
    assert items[0] == first[0]  # read back, not generated again
    new_calls = gen.calls - calls_before
    assert 2 <= new_calls <= 4  # two remaining items: one generation each, plus a judge call if it passed filters
    again = Counting(smollm2)
    list(run(tasks, again, again, config, tmp_path, progress=False))
    assert again.calls == 0
    (tmp_path / "items.jsonl").open("a").write('{"key": "torn')  # a kill mid-write
    assert len(list(run(tasks, again, again, config, tmp_path, progress=False))) == 3 and again.calls == 0


def test_a_resumed_run_must_keep_its_settings(tmp_path):
    check_resume(tmp_path, SynthConfig(n=5))
    check_resume(tmp_path, SynthConfig(n=5))
    with pytest.raises(ValueError, match="temperature"):
        check_resume(tmp_path, SynthConfig(n=5, temperature=1.2))


def test_finalized_set_is_a_beir_directory_the_evals_read(fixture_index, tmp_path):
    index = Index.open(fixture_index)
    cid, chunk = sample_chunks(index, 1, min_chars=50)[0]
    base = {"chunk_id": cid, "doc_id": chunk.doc_id, "lang": "en", "verdict": True, "seconds": 1.0, "reply": ""}
    items = [{**base, "key": f"{cid}:a", "kind": "answerable", "question": "What does BM25 score?",
              "answer": "terms", "dropped": None},
             {**base, "key": f"{cid}:u", "kind": "unanswerable", "question": "Who invented BM25 in 1970?",
              "answer": None, "dropped": None, "verdict": False},
             {**base, "key": "9:a", "kind": "answerable", "question": "What does BM25 score ?", "answer": "x",
              "dropped": None},
             {**base, "key": "8:a", "kind": "answerable", "question": None, "answer": None, "dropped": "unparsed"}]
    summary = finalize(items, index, tmp_path, SynthConfig(n=4), {"model": "test"})
    assert summary["kept"] == 2 and summary["dropped"] == {"duplicate": 1, "unparsed": 1}
    report = (tmp_path / "generation.md").read_text()
    assert "2 of 4 items kept" in report and "| duplicate | 1 |" in report
    assert (tmp_path / "generation.png").stat().st_size > 1000
    data = load_beir(tmp_path, "test")
    assert list(data.qrels.values()) == [{chunk.doc_id: 1}]  # the answerable one, to its document
    name, docs, qa = load_qa(tmp_path)
    assert {d.doc_id for d in docs} == {d["doc_id"] for d in index.documents()}
    assert [(q.impossible, q.answers) for q in qa] == [(False, ("terms",)), (True, ())]
    assert chunk.text in next(d.text for d in docs if d.doc_id == chunk.doc_id)


@pytest.mark.slow
def test_eval_generate_cli_plans_resumes_and_writes_a_set(fixture_index, tmp_path):
    out = tmp_path / "set"
    args = ("eval", "generate", "--index", fixture_index, "--out", out, "--n", "2", "--model", "smollm2", "-q")
    dry = rag(*args, "--dry-run", env={"RAG_LLM_CONTEXT_TOKENS": "2048"})
    assert dry.returncode == 0, dry.stderr
    assert "LLM calls" in dry.stderr and not (out / "items.jsonl").exists()
    r = rag(*args, env={"RAG_LLM_CONTEXT_TOKENS": "2048"})
    assert r.returncode == 0, r.stderr
    gen = json.loads((out / "generation.json").read_text())
    assert gen["items"] >= 2 and gen["model"] == "smollm2" and gen["config"]["temperature"] == 0.7
    assert (out / "qrels" / "test.tsv").read_text().startswith("query-id\tcorpus-id\tscore")
    lines = (out / "items.jsonl").read_text().splitlines()
    r = rag(*args[:-1], env={"RAG_LLM_CONTEXT_TOKENS": "2048"})  # nothing left to do
    assert r.returncode == 0 and (out / "items.jsonl").read_text().splitlines() == lines
    assert f"resuming: {len(lines)} items done, 0 left" in r.stderr
    clash = rag(*args[:-1], "--temperature", "1.1", "-q")
    assert clash.returncode != 0 and "other settings" in clash.stderr


def test_judge_verdicts_survive_malformed_replies():
    assert parse_verdict("**Yes**, every statement is supported.") is True
    assert parse_verdict("NO.") is False and parse_verdict("아니요, 다릅니다") is False
    for reply in ("", "The answer mentions 1889.", "Yes/No", '{"verdict": maybe}'):
        assert parse_verdict(reply) is None  # unreadable: counted as unparsed, never a number


def test_kappa_and_agreement_by_hand():
    # 4 items, 3 agree: p_o = 0.75; rater a yes 0.5, b yes 0.75: p_e = 0.375 + 0.125 = 0.5 -> kappa 0.5
    assert cohen_kappa([True, True, False, False], [True, True, True, False]) == pytest.approx(0.5)
    assert cohen_kappa([True, True], [True, True]) is None  # chance agreement is 1: undefined
    a = agreement([True, None, False, True], [True, True, False, False])
    assert a["n"] == 3 and a["unparsed"] == 1 and a["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert not any(isinstance(v, float) and math.isnan(v) for v in a.values())


def test_a_real_small_judge_returns_verdicts_or_none_never_nan(smollm2):
    v = judge_answer(smollm2, "When was the tower finished?", ["1889"], [(1, PASSAGE)], "It was finished in 1889 [1].")
    assert v.raw and v.seconds > 0
    for value in (v.faithful, v.correct, v.refusal_right):
        assert value in (True, False, None)


class Scripted:
    """A judge whose replies are given: checks how the rubric combines the three questions."""

    name = "scripted"

    def __init__(self, *replies):
        self.replies, self.prompts = list(replies), []

    def stream(self, messages, params):
        self.prompts.append(messages[-1]["content"])
        yield self.replies.pop(0)


def test_rubric_combines_the_refusal_support_and_reference_questions():
    refusal = judge_answer(Scripted("Yes."), "Q?", ["1889"], [(1, PASSAGE)], "I don't know.")
    assert (refusal.faithful, refusal.correct, refusal.refusal_right) == (True, False, False)
    right_refusal = judge_answer(Scripted("yes"), "Q?", [], [(1, PASSAGE)], "I don't know.")
    assert (right_refusal.correct, right_refusal.refusal_right) == (True, True)
    judge = Scripted("No", "yes", "no")
    answered = judge_answer(judge, "When?", ["1889"], [(1, PASSAGE)], "In 1890 [1].")
    assert (answered.faithful, answered.correct, answered.refusal_right) == (True, False, True)
    assert "Reference answer: 1889" in judge.prompts[2] and PASSAGE in judge.prompts[1]
    unreadable = judge_answer(Scripted("Hmm"), "Q?", ["1889"], [], "In 1889.")
    assert (unreadable.faithful, unreadable.correct, unreadable.refusal_right) == (None, None, None)


@pytest.mark.slow
def test_eval_generate_through_an_openai_compatible_server(fixture_index, llama_server, tmp_path):
    """A user with a model behind an endpoint generates (and judges) with it: llama.cpp's server here."""
    out = tmp_path / "remote"
    env = {"RAG_GENERATOR": "openai", "RAG_LLM_BASE_URL": llama_server, "RAG_LLM_MODEL": "smollm2",
           "RAG_LLM_API_KEY": "unused"}
    r = rag("eval", "generate", "--index", fixture_index, "--out", out, "--n", "2", "--unanswerable", "0", "-q", env=env)
    assert r.returncode == 0, r.stderr
    gen = json.loads((out / "generation.json").read_text())
    assert gen["model"] == "openai:smollm2" and gen["judge"] == "openai:smollm2" and gen["items"] == 2
    replies = [json.loads(line)["reply"] for line in (out / "items.jsonl").read_text().splitlines()]
    assert all(reply.strip() for reply in replies)  # the server answered every call
