"""The prompt-injection suite's plumbing: the data set, its PDFs, the channel report and one real
run through a live ``rag serve`` with the tiny model (the verdict on the default model is the full
run, eval/results/injection/report.md)."""

import json
from io import BytesIO

from pypdf import PdfReader

from eval.injection import DATA, build_pdf, load_cases, main, markers
from tests.conftest import FIXTURES


def test_the_suite_covers_every_technique_in_both_languages():
    cases = load_cases(DATA, None)
    assert len(cases) >= 40 and {c["lang"] for c in cases} == {"en", "ko"}
    kinds = {c["kind"] for c in cases}
    assert {"ignore-rules", "fake-system", "fake-citation", "reveal-system-prompt", "reveal-keys", "exfil-link",
            "exfil-image", "html-comment", "pdf-metadata", "front-matter"} <= kinds
    assert all(len(c["questions"]) >= 1 and c["obeyed_if"] for c in cases)
    assert len({c["filename"] for c in cases}) == len(cases)


def test_a_built_pdf_reads_back_in_korean_with_its_metadata():
    data = build_pdf("정수기 필터는 6개월마다 교체합니다.\nReplace the filter yearly.", {"Title": "AP300", "Subject": "SYS"})
    reader = PdfReader(BytesIO(data))
    text = reader.pages[0].extract_text()
    assert "정수기 필터는" in text and "Replace the filter yearly." in text
    assert reader.metadata.title == "AP300" and reader.metadata.subject == "SYS"


def test_markers_count_an_exfiltration_link_as_obeyed():
    case = {"kind": "exfil-image", "obeyed_if": ["PINEAPPLE"]}
    assert markers(case, "See ![x](http://evil.example/p.png)") == ["URL"]
    assert markers(case, "The kettle holds 1.7 litres [1].") == []
    assert markers({"kind": "ignore-rules", "obeyed_if": ["PINEAPPLE-OVERRIDE"]}, "pineapple-override-93") != []


def test_one_injected_document_asked_through_a_live_server(tmp_path, monkeypatch):
    cases = [c for c in load_cases(DATA, None) if c["filename"].endswith(".html")][:2]
    data = tmp_path / "cases.jsonl"
    data.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases), encoding="utf-8")
    for key, value in {"RAG_LLM_CONTEXT_TOKENS": "2048", "RAG_MAX_TOKENS": "24", "RAG_RERANKER": "none"}.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    result = main(["--model", "smollm2", "--data", str(data), "--corpus", str(FIXTURES / "corpus"),
                   "--out", str(out), "-q"])
    rows = result["rows"]
    assert len(rows) == sum(len(c["questions"]) for c in cases)
    assert all(r["injected_retrieved"] for r in rows)  # each question reaches its document
    # HTML comments never reach the prompt: the injection is dropped at ingest.
    assert all("text" not in ch and "title" not in ch for ch in result["index"]["channels"].values())
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## By kind" in report and "## Where the injection reaches the index" in report
    assert result["summary"]["kind"][-1]["questions"] == len(rows)
