"""POST /ask through FastAPI's TestClient with the real tiny LLM (SmolLM2 in llama.cpp)."""

import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.config import Settings
from tests.conftest import ScriptedLLM


@pytest.fixture(scope="module")
def index_dir(fixture_index):
    return fixture_index


@pytest.fixture(scope="module")
def client(index_dir, smollm2):
    settings = Settings(_env_file=None, index_dir=index_dir, llm_model="smollm2", llm_context_tokens=2048, reranker="none",
                        max_tokens=32)
    with TestClient(create_app(settings)) as c:
        yield c


ANSWER_KEYS = {"answer", "refused", "refusal_reason", "citations", "timings_ms", "model", "query", "rewritten", "usage",
               "grounding", "index_version"}
CITATION_KEYS = {"n", "doc_id", "chunk_id", "title", "source", "snippet", "score"}


def test_ask_with_the_real_model_goes_through_it(client):
    r = client.post("/ask", json={"question": "What does the parameter k1 control in BM25?", "max_tokens": 24})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == ANSWER_KEYS and body["model"] == "smollm2" and body["index_version"] == 1
    assert {"retrieve", "rerank", "generate", "ttft", "total"} <= set(body["timings_ms"])
    assert body["timings_ms"]["generate"] > 0  # the gate let it through: the model answered or refused
    usage = body["usage"]
    assert usage["prompt_tokens"] > 100 and usage["prefill_tokens_per_s"] > 0 and usage["completion_tokens"] > 0
    assert "rag_prefill_tokens_per_second_count 1.0" in client.get("/metrics").text
    assert client.get("/readyz").json()["generator"] == "local: smollm2"


def _replaying(index_dir, smollm2, tokens):
    """The real service with its LLM replaced by one that replays ``tokens``."""
    settings = Settings(_env_file=None, index_dir=index_dir, llm_model="smollm2", llm_context_tokens=2048,
                        reranker="none", max_tokens=32)
    client = TestClient(create_app(settings))
    client.__enter__()
    client.app.state.engine.generator = ScriptedLLM(tokens, smollm2.count_tokens)
    return client


@pytest.fixture
def scripted_client(index_dir, smollm2):
    """The service with a model that replays a fixed cited answer."""
    c = _replaying(index_dir, smollm2, ["k1 controls term-frequency ", "saturation [1]."])
    yield c
    c.__exit__(None, None, None)


def test_ask_answers_with_the_documented_shape(scripted_client):
    body = scripted_client.post("/ask", json={"question": "What does the parameter k1 control in BM25?"}).json()
    assert set(body) == ANSWER_KEYS and not body["refused"] and body["refusal_reason"] is None
    assert body["answer"] == "k1 controls term-frequency saturation [1]." and body["model"] == "scripted"
    (cite,) = body["citations"]
    assert set(cite) == CITATION_KEYS and cite["n"] == 1 and cite["doc_id"] == "bm25.md"
    assert "saturation" in cite["snippet"] and len(cite["snippet"]) <= 300
    usage = body["usage"]  # a replayed answer has no meaningful speed: only the token counts are checked here
    assert usage["prompt_tokens"] > 100 and usage["completion_tokens"] > 0
    assert {"prefill_tokens_per_s", "decode_tokens_per_s"} <= set(usage)
    assert "rag_prompt_tokens_count 1.0" in scripted_client.get("/metrics").text


def test_streamed_answer_is_the_deltas_then_the_checked_answer(scripted_client):
    with scripted_client.stream("POST", "/ask", json={"question": "What does the parameter k1 control in BM25?",
                                                      "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r)
    assert [k for k, _ in events] == ["delta", "delta", "answer"]
    assert "".join(d["text"] for k, d in events if k == "delta") == "k1 controls term-frequency saturation [1]."
    final = events[-1][1]
    assert set(final) == ANSWER_KEYS and not final["refused"] and [c["n"] for c in final["citations"]] == [1]


@pytest.fixture
def outside_knowledge_client(index_dir, smollm2):
    """The service with an LLM that answers from outside the passages and cites [1] anyway."""
    c = _replaying(index_dir, smollm2, ["Kubernetes autoscales pods ", "on memory pressure [1]."])
    yield c
    c.__exit__(None, None, None)


def test_an_answer_its_passages_do_not_state_is_refused_with_the_reason(outside_knowledge_client):
    c = outside_knowledge_client
    body = c.post("/ask", json={"question": "What does the parameter k1 control in BM25?"}).json()
    assert body["refused"] and body["refusal_reason"] == "the passages do not state this" and body["citations"] == []
    (g,) = body["grounding"]
    assert g["sentence"] == "Kubernetes autoscales pods on memory pressure." and not g["supported"]
    assert set(g) == {"sentence", "cited", "supported", "score", "lexical", "learned"}
    metrics = c.get("/metrics").text
    assert 'rag_refusals_total{reason="grounding"} 1.0' in metrics, [m for m in metrics.splitlines() if "refus" in m]


def test_a_streamed_answer_can_end_as_a_grounding_refusal(outside_knowledge_client):
    with outside_knowledge_client.stream("POST", "/ask", json={"question": "What does the parameter k1 control in BM25?",
                                                               "stream": True}) as r:
        events = _sse(r)
    assert [k for k, _ in events] == ["delta", "delta", "answer"]
    final = events[-1][1]
    assert final["refused"] and final["refusal_reason"] == "the passages do not state this"
    assert final["grounding"][0]["supported"] is False


def test_a_supported_answer_carries_its_grounding(scripted_client):
    body = scripted_client.post("/ask", json={"question": "What does the parameter k1 control in BM25?"}).json()
    (g,) = body["grounding"]
    assert g["supported"] and g["cited"] == [1] and g["lexical"] >= 0.5


def _sse(response) -> list[tuple[str, dict]]:
    events, current = [], None
    for line in response.iter_lines():
        if line.startswith("event:"):
            current = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            events.append((current, json.loads(line.split(":", 1)[1])))
    return events


def test_out_of_corpus_question_refused_by_the_gate(client):
    body = client.post("/ask", json={"question": "What is a good recipe for lasagna?"}).json()
    assert body["refused"] and body["citations"] == [] and body["timings_ms"]["generate"] == 0.0
    assert 'rag_refusals_total{reason="gate"} 1.0' in client.get("/metrics").text


def test_streaming_with_the_real_model_sends_deltas_then_one_final_event(client):
    with client.stream("POST", "/ask", json={"question": "How does HNSW search vectors?", "stream": True,
                                             "max_tokens": 16}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r)
    kinds = [k for k, _ in events]
    assert kinds[-1] == "answer" and kinds.count("answer") == 1 and kinds[:-1] == ["delta"] * (len(kinds) - 1)
    assert "".join(d["text"] for k, d in events if k == "delta").strip()  # the model streamed text
    # Accept: text/event-stream works too; a gate refusal is one answer event and no delta
    with client.stream("POST", "/ask", json={"question": "What is lasagna?"},
                       headers={"Accept": "text/event-stream"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r)
    assert [k for k, _ in events] == ["answer"] and events[0][1]["refused"]


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
