"""POST /ask through FastAPI's TestClient with the real tiny LLM (SmolLM2 in llama.cpp)."""

import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.config import Settings


@pytest.fixture(scope="module")
def index_dir(fixture_index):
    return fixture_index


@pytest.fixture(scope="module")
def client(index_dir, smollm2):
    settings = Settings(_env_file=None, index_dir=index_dir, llm_model="smollm2", llm_context_tokens=2048, reranker="none",
                        max_tokens=32)
    with TestClient(create_app(settings)) as c:
        yield c


def test_ask_answers_with_the_documented_shape(client):
    r = client.post("/ask", json={"question": "What does the parameter k1 control in BM25?", "max_tokens": 24})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"answer", "refused", "refusal_reason", "citations", "timings_ms", "model", "index_version"}
    assert body["model"] == "smollm2" and body["index_version"] == 1
    assert {"retrieve", "rerank", "generate", "total"} <= set(body["timings_ms"])
    for c in body["citations"]:
        assert set(c) == {"n", "doc_id", "chunk_id", "title", "source", "snippet", "score"}
    if body["refused"]:
        assert body["citations"] == []
    assert client.get("/readyz").json()["generator"] == "local: smollm2"


def test_out_of_corpus_question_refused_by_the_gate(client):
    body = client.post("/ask", json={"question": "What is a good recipe for lasagna?"}).json()
    assert body["refused"] and body["citations"] == [] and body["timings_ms"]["generate"] == 0.0
    assert 'rag_refusals_total{reason="gate"} 1.0' in client.get("/metrics").text


def test_streaming_sends_deltas_then_one_final_event(client):
    with client.stream("POST", "/ask", json={"question": "How does HNSW search vectors?", "stream": True,
                                             "max_tokens": 16}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events, current = [], None
        for line in r.iter_lines():
            if line.startswith("event:"):
                current = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((current, json.loads(line.split(":", 1)[1])))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "answer" and kinds.count("answer") == 1
    final = events[-1][1]
    if not final["refused"]:
        assert "delta" in kinds and "".join(d["text"] for k, d in events if k == "delta").strip()
    # Accept: text/event-stream works too
    with client.stream("POST", "/ask", json={"question": "What is lasagna?"},
                       headers={"Accept": "text/event-stream"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert any(line.startswith("event: answer") for line in r.iter_lines())


@pytest.mark.parametrize("payload", [{"question": ""}, {"question": "  "}, {"question": "x" * 2001},
                                     {"question": "x", "top_k": 0}, {"question": "x", "temperature": 3},
                                     {"question": "x", "filters": {"nope": 1}}, {"q": "x"}])
def test_invalid_questions_are_422(client, payload):
    r = client.post("/ask", json=payload)
    assert r.status_code == 422 and r.json()["error"] == "invalid request"


def test_max_tokens_leaving_no_room_for_passages_is_422(client):
    r = client.post("/ask", json={"question": "What does the parameter k1 control in BM25?", "max_tokens": 1600})
    assert r.status_code == 422 and "lower max_tokens" in r.json()["detail"]
    # the streaming path checks before the response starts, so it is a plain 422 too
    r = client.post("/ask", json={"question": "What does the parameter k1 control in BM25?", "max_tokens": 1600,
                                  "stream": True})
    assert r.status_code == 422


def test_unavailable_llm_is_503_and_search_still_works(index_dir):
    settings = Settings(_env_file=None, index_dir=index_dir, llm_model="/no/such/model.gguf", reranker="none")
    with TestClient(create_app(settings)) as c:
        r = c.post("/ask", json={"question": "What is BM25?"})
        assert r.status_code == 503 and "no LLM available" in r.json()["detail"]
        assert c.post("/search", json={"query": "BM25"}).status_code == 200
        assert c.get("/readyz").json()["generator"].startswith("unavailable")
