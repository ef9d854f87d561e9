"""The HTTP API through FastAPI's TestClient (real index, real models, real HTTP semantics)."""

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.config import Settings


@pytest.fixture(scope="module")
def index_dir(fixture_index):
    return fixture_index


def make_client(index_dir, **kw):
    kw.setdefault("reranker", "none")
    settings = Settings(_env_file=None, index_dir=index_dir, **kw)
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def client(index_dir):
    with make_client(index_dir) as c:
        yield c


def test_health_ready_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["chunks"] > 0 and ready["embedder"] == "minilm"
    assert ready["reranker"].startswith("off")
    client.post("/search", json={"query": "BM25"})
    text = client.get("/metrics").text
    assert 'rag_requests_total{endpoint="/search",status="200"}' in text
    assert "rag_stage_seconds_bucket" in text
    gauges = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith(("rag_index_", "rag_llm_prompt_cache_bytes"))}
    assert gauges == {"rag_index_version": ready["index_version"], "rag_index_documents": ready["documents"],
                      "rag_index_chunks": ready["chunks"], "rag_llm_prompt_cache_bytes": 0.0}


def test_search_returns_hits_with_stage_scores(client):
    r = client.post("/search", json={"query": "What does k1 control in BM25?", "top_k": 3})
    assert r.status_code == 200 and r.headers["x-request-id"]
    body = r.json()
    assert body["hits"][0]["doc_id"] == "bm25.md" and len(body["hits"]) == 3
    assert body["hits"][0]["scores"]["bm25"] is not None and body["hits"][0]["ranks"]["fused"] == 1
    r = client.post("/search", json={"query": "vitamin", "filters": {"metadata": {"topic": "nutrition"}}})
    assert [h["doc_id"] for h in r.json()["hits"]] == ["sci-2"]


@pytest.mark.parametrize("payload, field", [
    ({"query": ""}, "query"), ({"query": "   "}, "query"), ({"query": "x" * 2001}, "query"),
    ({"query": "x", "top_k": 0}, "top_k"), ({"query": "x", "top_k": 51}, "top_k"),
    ({"query": "x", "mode": "sparse"}, "mode"), ({"query": "x", "filters": {"colour": "red"}}, "filters.colour"),
])
def test_invalid_search_requests_get_422_with_a_message(client, payload, field):
    r = client.post("/search", json=payload)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid request" and body["detail"][0]["field"] == field


def test_unknown_metadata_field_and_oversized_body(client, index_dir):
    r = client.post("/search", json={"query": "x", "filters": {"metadata": {"colour": "red"}}})
    assert r.status_code == 422 and "unknown metadata filter" in r.json()["detail"]
    with make_client(index_dir, max_body_mb=0.001) as small:
        r = small.post("/search", json={"query": "x" * 1500})
        assert r.status_code == 413 and "too large" in r.json()["error"]


def test_a_chunked_body_without_content_length_is_limited_too(index_dir):
    def chunks(total: int, piece: bytes = b" " * 4096):
        yield b'{"query": "'
        for _ in range(total // len(piece)):
            yield piece
        yield b'"}'

    with make_client(index_dir, max_body_mb=0.05) as small:
        r = small.post("/search", content=chunks(200_000), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "request body too large"
        assert "content-length" not in {k.lower() for k in r.request.headers}  # it really was chunked
        before = small.get("/documents").json()
        boundary = "x1234"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.md\"\r\n"
                f"Content-Type: text/markdown\r\n\r\n").encode()

        def upload():
            yield body
            yield from (b"word " * 1000 for _ in range(40))
            yield f"\r\n--{boundary}--\r\n".encode()

        r = small.post("/documents", content=upload(),
                       headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 413 and small.get("/documents").json() == before  # nothing ingested, nothing lost
        assert small.post("/search", json={"query": "BM25"}).status_code == 200  # and the service goes on


def test_api_keys(index_dir):
    with make_client(index_dir, api_keys="k1, k2") as c:
        assert c.get("/healthz").status_code == 200
        assert c.post("/search", json={"query": "BM25"}).status_code == 401
        assert c.post("/search", json={"query": "BM25"}, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.post("/search", json={"query": "BM25"}, headers={"Authorization": "Bearer k2"}).status_code == 200


def test_not_ready_without_an_index(tmp_path):
    with make_client(tmp_path / "missing") as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and not r.json()["ready"] and "no index" in r.json()["detail"]
        r = c.post("/search", json={"query": "x"})
        assert r.status_code == 503 and r.json()["error"] == "IndexNotFoundError"


def test_documents_add_upload_list_delete_and_live_swap(index_dir, tmp_path):
    import shutil

    path = tmp_path / "ix"
    shutil.copytree(index_dir, path)
    with make_client(path) as c:
        v0 = c.get("/readyz").json()["index_version"]
        r = c.post("/documents", json={"documents": [
            {"id": "faq/refunds", "title": "Refunds", "text": "Refunds are issued within 14 days of purchase.",
             "metadata": {"team": "support"}}]})
        assert r.status_code == 200 and r.json()["added"] == 1 and r.json()["index_version"] == v0 + 1
        hits = c.post("/search", json={"query": "how many days for a refund"}).json()["hits"]
        assert hits[0]["doc_id"] == "faq/refunds"  # the live index was swapped
        files = [("files", ("notes.md", b"# Notes\n\nColBERT uses late interaction.", "text/markdown")),
                 ("files", ("bad.pdf", b"%PDF-1.4 broken", "application/pdf"))]
        r = c.post("/documents", files=files)
        assert r.status_code == 200 and r.json()["added"] == 1
        assert r.json()["skipped"][0]["source"] == "upload:bad.pdf"
        listed = c.get("/documents", params={"limit": 1000}).json()
        assert {"faq/refunds", "notes.md"} <= {d["doc_id"] for d in listed["documents"]}
        assert listed["total"] == 10
        r = c.delete("/documents/faq/refunds")
        assert r.status_code == 200 and r.json()["removed"] == 1
        assert c.delete("/documents/faq/refunds").status_code == 404
        r = c.post("/documents", json={"documents": []})
        assert r.status_code == 422


def test_a_version_committed_by_another_process_is_served_without_a_restart(index_dir, tmp_path, embedder):
    import shutil
    import time

    from ingest.pipeline import ingest
    from rag.types import Document

    path = tmp_path / "ix"
    shutil.copytree(index_dir, path)
    with make_client(path, index_refresh_s=0.05) as c:
        v0 = c.get("/readyz").json()["index_version"]
        # What `rag ingest` does from a shell while the service runs: a writer in another process.
        doc = Document("cli/otters.md", "Sea otters hold hands while they sleep.", "Otters", "cli/otters.md", "markdown")
        report = ingest([], path, Settings(_env_file=None, index_dir=path), documents=[doc], embedder=embedder,
                        progress=False)
        assert report.committed
        time.sleep(0.1)
        hits = c.post("/search", json={"query": "why do sea otters hold hands"}).json()
        assert hits["index_version"] == v0 + 1 and hits["hits"][0]["doc_id"] == "cli/otters.md"
        assert c.get("/readyz").json()["documents"] == c.get("/documents").json()["total"]


def test_openapi_lists_every_endpoint_and_is_a_valid_document(client):
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").json()
    routes = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert {("/search", "post"), ("/ask", "post"), ("/documents", "post"), ("/documents", "get"),
            ("/documents/{doc_id}", "delete"), ("/healthz", "get"), ("/readyz", "get"),
            ("/metrics", "get")} <= routes
    for name in ("SearchRequest", "AskRequest", "DocumentsIn"):
        assert spec["components"]["schemas"][name].get("examples"), name
    body = spec["paths"]["/documents"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/DocumentsIn"} and "DocumentIn" in spec["components"]["schemas"]
    validate(spec)  # every $ref resolves, the document is valid OpenAPI 3.1
