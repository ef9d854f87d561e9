"""`rag eval chat` end to end on the fixture corpus with the tiny real model: the plumbing and the
report (quality is measured by the full run, eval/results/chat_*.md)."""

import json

from eval.chat import TurnRecord, load_conversations, summarize
from tests.conftest import FIXTURES
from tests.test_cli import rag

CONVERSATIONS = [
    {"id": "c1", "lang": "en", "corpus": "bundled", "turns": [
        {"question": "What does the parameter k1 control in BM25?", "standalone": "What does the parameter k1 control in BM25?",
         "doc": "bm25.md", "answer": "saturation", "kind": "first"},
        {"question": "And what does b do?", "standalone": "What does the parameter b do in BM25?",
         "doc": "bm25.md", "answer": "length", "kind": "ellipsis"},
        {"question": "Who invented it?", "standalone": "Who invented BM25?", "doc": None, "answer": None,
         "kind": "unanswerable"}]},
    {"id": "c2", "lang": "ko", "corpus": "bundled", "turns": [
        {"question": "한국어 검색에서 형태소 분석기는 무엇을 하나요?", "standalone": "한국어 검색에서 형태소 분석기는 무엇을 하나요?",
         "doc": "ko/bm25-ko.md", "answer": "조사와 어미", "kind": "first"},
        {"question": "그럼 그건 왜 필요한가요?", "standalone": "한국어 검색에 형태소 분석기는 왜 필요한가요?",
         "doc": "ko/bm25-ko.md", "answer": "띄어쓰기", "kind": "pronoun"}]},
]


def test_eval_chat_reports_both_modes_and_the_standalone_ceiling(tmp_path):
    path = tmp_path / "conv.jsonl"
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CONVERSATIONS), encoding="utf-8")
    out = tmp_path / "chat.json"
    env = {"RAG_LLM_MODEL": "smollm2", "RAG_LLM_CONTEXT_TOKENS": "2048", "RAG_MAX_TOKENS": "24", "RAG_RERANKER": "none"}
    r = rag("eval", "chat", "--conversations", path, "--corpus", FIXTURES / "corpus", "--squad", tmp_path / "none",
            "--out", out, "-q", env={**env, "RAG_INDEX_DIR": str(tmp_path / "ix")}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert set(report["modes"]) == {"never", "auto"} and report["conversations"] == 2
    assert len(report["records"]) == 2 * 5 and report["modes"]["never"]["follow_up_turns"] == 3
    never = [x for x in report["records"] if x["mode"] == "never"]
    assert all(x["query"] == q["question"] for x, q in zip(never, [t for c in CONVERSATIONS for t in c["turns"]]))
    assert report["modes"]["never"]["rewritten_share"] == 0.0 and report["modes"]["auto"]["rewritten_share"] > 0
    assert 0 <= report["standalone_recall_at_5"] <= 1 and report["modes"]["auto"]["unanswerable"] == 1
    assert set(report["by_language"]) == {"en", "ko"}
    assert (out.with_suffix(".md")).read_text().startswith("# Conversations: 2 conversations, 3 follow-up turns")
    assert out.with_suffix(".png").stat().st_size > 0


def test_summary_counts_each_rate_on_its_own_turns():
    recs = [TurnRecord("a", 0, "en", "first", "auto", "q", False, True, refused=False, correct=True),
            TurnRecord("a", 1, "en", "pronoun", "auto", "q2", True, True, refused=False, correct=True,
                       cited_right=True, rewrite_ms=300, ttft_ms=1000),
            TurnRecord("a", 2, "en", "pronoun", "auto", "q3", True, False, refused=True, correct=False,
                       rewrite_ms=500, ttft_ms=2000),
            TurnRecord("a", 3, "en", "unanswerable", "auto", "q4", False, None, refused=True)]
    s = summarize(recs)
    assert (s["follow_up_turns"], s["answerable"], s["unanswerable"]) == (3, 2, 1)
    assert s["recall_at_5"] == 0.5 and s["answered_correctly"] == 0.5 and s["false_refusal"] == 0.5
    assert s["unanswerable_refused"] == 1.0 and s["citation_accuracy"] == 1.0 and s["rewrite_ms_p50"] == 400
    assert s["first_turn_recall_at_5"] == 1.0 and s["rewritten_share"] == round(2 / 3, 4)


def test_conversations_load_with_defaults(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "x", "turns": [{"question": "q1"}, {"question": "q2", "doc": "d"}]}) + "\n")
    (conv,) = load_conversations(path)
    assert conv.lang == "en" and conv.corpus == "bundled" and conv.turns[1].standalone == "q2"
    assert [t.kind for t in conv.turns] == ["first", "pronoun"]


def test_squad_conversations_can_be_searched_over_a_beir_corpus(tmp_path):
    """`--squad corpus.jsonl`: the 'squad' conversations' documents come from a BEIR corpus whose
    ids are the paragraph ids (a larger haystack than the SQuAD file's own paragraphs)."""
    beir = tmp_path / "squad2_dev" / "beir"
    beir.mkdir(parents=True)
    rows = [{"_id": "squad2dev-00-000", "title": "Normans", "text": "The Normans gave their name to Normandy, a "
             "region in France. Rollo was their first ruler."},
            {"_id": "squad2dev-09-000", "title": "Tides", "text": "Spring tides follow the full moon and the new moon."}]
    (beir / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    conv = {"id": "s1", "lang": "en", "corpus": "squad", "turns": [
        {"question": "Which region did the Normans give their name to?", "standalone": "Which region did the Normans "
         "give their name to?", "doc": "squad2dev-00-000", "answer": "Normandy", "kind": "first"},
        {"question": "Who was their first ruler?", "standalone": "Who was the first ruler of the Normans?",
         "doc": "squad2dev-00-000", "answer": "Rollo", "kind": "pronoun"}]}
    path = tmp_path / "conv.jsonl"
    path.write_text(json.dumps(conv) + "\n", encoding="utf-8")
    out = tmp_path / "chat.json"
    env = {"RAG_LLM_MODEL": "smollm2", "RAG_LLM_CONTEXT_TOKENS": "2048", "RAG_MAX_TOKENS": "24", "RAG_RERANKER": "none"}
    r = rag("eval", "chat", "--conversations", path, "--squad", beir / "corpus.jsonl", "--no-answers",
            "--out", out, "-q", env={**env, "RAG_INDEX_DIR": str(tmp_path / "ix")}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["embedders"] == {"squad": "minilm"} and report["standalone_recall_at_5"] == 1.0
    assert (tmp_path / "indexes" / "chat-squad2_dev-beir").is_dir()
