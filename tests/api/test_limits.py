"""Abuse controls and long writes, over real HTTP: per-key rate limits (429), a bounded queue in
front of the LLM (503), request timeouts (504), generations stopped when their client goes away,
and writes as jobs (202, status, progress, cancel) that queue visibly while reads go on."""

import shutil
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.config import Settings
from rag.index.lock import IndexLock
from tests.conftest import SlowLLM
from tests.helpers import serving

QUESTION = {"question": "What does the parameter k1 control in BM25?"}
ANSWER = ["k1 controls ", "term-frequency ", "saturation ", "[1]."]


@pytest.fixture
def index_copy(fixture_index, tmp_path):
    path = tmp_path / "ix"
    shutil.copytree(fixture_index, path)
    return path


def _settings(index_dir, **kw):
    kw.setdefault("reranker", "none")
    return Settings(_env_file=None, index_dir=index_dir, llm_model="smollm2", llm_context_tokens=2048,
                    max_tokens=32, ui=False, **kw)


def _app(index_dir, llm, **kw):
    client = TestClient(create_app(_settings(index_dir, **kw)))
    client.__enter__()
    client.app.state.engine.generator = llm
    return client


def test_each_key_has_its_own_rate_and_gets_429_with_retry_after(fixture_index, smollm2):
    client = _app(fixture_index, SlowLLM(ANSWER, 0, smollm2.count_tokens), api_keys="a,b", rate_limit_per_minute=2)
    try:
        a, b = {"Authorization": "Bearer a"}, {"Authorization": "Bearer b"}
        assert [client.post("/search", json={"query": "BM25"}, headers=a).status_code for _ in range(2)] == [200, 200]
        r = client.post("/ask", json=QUESTION, headers=a)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"] == "RateLimitedError" and "2 requests per minute" in r.json()["detail"]
        assert client.post("/search", json={"query": "BM25"}, headers=b).status_code == 200  # b's own bucket
        assert client.get("/healthz").status_code == 200  # probes are never limited
        assert 'rag_requests_total{endpoint="/ask",status="429"} 1.0' in client.get("/metrics", headers=b).text
    finally:
        client.__exit__(None, None, None)


def test_a_full_generation_queue_answers_503_at_once_and_the_queued_answer_goes_through(fixture_index, smollm2):
    llm = SlowLLM(ANSWER, 0.4, smollm2.count_tokens)
    client = _app(fixture_index, llm, max_concurrent_generations=1, max_queued_generations=1)
    try:
        results = {}

        def ask(name):
            results[name] = client.post("/ask", json=QUESTION)

        first = threading.Thread(target=ask, args=("first",))
        first.start()
        _wait_for(lambda: client.app.state.slots.active == 1)
        second = threading.Thread(target=ask, args=("second",))
        second.start()
        _wait_for(lambda: client.app.state.slots.waiting == 1)
        t = time.monotonic()
        third = client.post("/ask", json=QUESTION)
        assert third.status_code == 503 and time.monotonic() - t < 1.0  # refused without waiting
        assert third.json()["error"] == "OverloadedError" and int(third.headers["retry-after"]) >= 1
        first.join(30)
        second.join(30)
        assert results["first"].status_code == 200 and results["second"].status_code == 200
        assert not results["second"].json()["refused"]
        assert client.app.state.slots.active == 0 and client.app.state.slots.waiting == 0
    finally:
        client.__exit__(None, None, None)


def test_an_answer_past_the_request_timeout_is_a_504_and_generation_stops(fixture_index, smollm2):
    llm = SlowLLM(["word "] * 30, 0.2, smollm2.count_tokens)
    client = _app(fixture_index, llm, request_timeout_s=1.0)
    try:
        t = time.monotonic()
        r = client.post("/ask", json=QUESTION)
        assert r.status_code == 504 and r.json()["error"] == "GeneratorTimeout"
        assert "RAG_REQUEST_TIMEOUT_S" in r.json()["detail"] and time.monotonic() - t < 5
        sent = llm.sent
        time.sleep(0.6)
        assert sent < 15 and llm.sent == sent  # stopped, not running on for nobody
        assert client.app.state.slots.active == 0
    finally:
        client.__exit__(None, None, None)


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_goes_away_stops_its_generation(fixture_index, smollm2, stream):
    llm = SlowLLM(["word "] * 40, 0.1, smollm2.count_tokens)
    with serving(_settings(fixture_index), lambda engine: llm) as (url, app):
        if stream:  # read the first deltas, then hang up
            with httpx.stream("POST", f"{url}/ask", json={**QUESTION, "stream": True}, timeout=10) as r:
                lines = r.iter_lines()
                assert next(line for line in lines if line.startswith("event: delta"))
        else:  # give up waiting for the whole answer
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{url}/ask", json=QUESTION, timeout=1.0)
        _wait_for(lambda: app.state.slots.active == 0, 5)
        sent = llm.sent
        time.sleep(0.5)
        assert sent < 30 and llm.sent == sent


def _wait_for(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _poll(client, job_id, until, seconds=60):
    deadline = time.monotonic() + seconds
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if until(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_a_write_that_outlasts_the_wait_is_a_job_with_progress_and_result(index_copy, smollm2):
    client = _app(index_copy, SlowLLM(ANSWER, 0, smollm2.count_tokens))
    try:
        doc = {"id": "faq/refunds", "title": "Refunds", "text": "Refunds are issued within 14 days of purchase."}
        r = client.post("/documents", params={"wait": 0}, json={"documents": [doc]})
        assert r.status_code == 202 and r.headers["location"] == f"/jobs/{r.json()['id']}"
        assert r.json()["status"] in ("queued", "running") and r.json()["kind"] == "add"
        job = _poll(client, r.json()["id"], lambda j: j["status"] == "succeeded")
        assert job["status"] == "succeeded" and job["result"]["added"] == 1 and job["finished_at"]
        assert client.post("/search", json={"query": "refund days"}).json()["hits"][0]["doc_id"] == "faq/refunds"
        assert job["id"] in [j["id"] for j in client.get("/jobs").json()["jobs"]]
        r = client.delete("/documents/faq/refunds")  # finishes within the default wait: 200 and its result
        assert r.status_code == 200 and r.json()["removed"] == 1
        assert client.get("/jobs/nope").status_code == 404
    finally:
        client.__exit__(None, None, None)


def test_writes_queue_behind_another_writer_visibly_and_can_be_cancelled_while_reads_go_on(index_copy, smollm2):
    """A CLI ingest holding the index lock: the API's write waits for it (stage shown), the next
    write queues behind, a full queue is a 503, and searches are answered meanwhile."""
    client = _app(index_copy, SlowLLM(ANSWER, 0, smollm2.count_tokens), max_queued_writes=1)
    try:
        v0 = client.get("/readyz").json()["index_version"]
        docs = lambda i: {"documents": [{"id": f"d{i}", "text": f"Document number {i} about refunds."}]}  # noqa: E731
        with IndexLock(index_copy):
            first = client.post("/documents", params={"wait": 0}, json=docs(1)).json()
            _poll(client, first["id"], lambda j: j["stage"] == "waiting for the index lock", 10)
            second = client.post("/documents", params={"wait": 0}, json=docs(2)).json()
            assert client.get(f"/jobs/{second['id']}").json()["status"] == "queued"
            full = client.post("/documents", params={"wait": 0}, json=docs(3))
            assert full.status_code == 503 and full.json()["error"] == "OverloadedError" and full.headers["retry-after"]
            t = time.monotonic()
            assert client.post("/search", json={"query": "BM25"}).status_code == 200  # reads never wait
            assert time.monotonic() - t < 5
            cancelled = client.delete(f"/jobs/{second['id']}").json()
            assert cancelled["status"] == "cancelled"
            assert client.delete(f"/jobs/{first['id']}").json()["cancel_requested"]
            job = _poll(client, first["id"], lambda j: j["status"] != "running", 10)
            assert job["status"] == "cancelled" and job["error"]["error"] == "Cancelled"
        assert client.get("/readyz").json()["index_version"] == v0  # nothing was committed
        listed = {d["doc_id"] for d in client.get("/documents", params={"limit": 1000}).json()["documents"]}
        assert not {"d1", "d2", "d3"} & listed
        r = client.post("/documents", json=docs(4))  # the writer thread lives on
        assert r.status_code == 200 and r.json()["index_version"] == v0 + 1
    finally:
        client.__exit__(None, None, None)


def test_an_upload_with_too_many_files_is_refused_and_file_names_cannot_escape(index_copy, smollm2):
    client = _app(index_copy, SlowLLM(ANSWER, 0, smollm2.count_tokens), max_upload_files=3)
    try:
        files = [("files", (f"n{i}.md", b"# N\n\nSome text.", "text/markdown")) for i in range(4)]
        r = client.post("/documents", files=files)
        assert r.status_code == 400 and "Too many files" in r.json()["error"]
        files = [("files", ("../../etc/evil.md", b"# Evil\n\nPath traversal attempt.", "text/markdown")),
                 ("files", ("..\\..\\win.md", b"# Win\n\nBackslash traversal.", "text/markdown"))]
        r = client.post("/documents", files=files)
        assert r.status_code == 200 and r.json()["added"] == 2
        ids = {d["doc_id"] for d in client.get("/documents", params={"limit": 1000}).json()["documents"]}
        assert {"evil.md", "win.md"} <= ids and not any(".." in i for i in ids)
        assert not (index_copy.parent / "etc").exists()
    finally:
        client.__exit__(None, None, None)
