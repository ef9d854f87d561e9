"""Hostile input through the real HTTP API: each is a 4xx with a JSON message or a skipped file
with its reason, in bounded time, and nothing already ingested is lost."""

import shutil
import zlib

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.config import Settings


@pytest.fixture
def client(fixture_index, tmp_path):
    path = tmp_path / "ix"
    shutil.copytree(fixture_index, path)
    settings = Settings(_env_file=None, index_dir=path, reranker="none", write_wait_s=120)
    with TestClient(create_app(settings)) as c:
        c.before = {d["doc_id"] for d in c.get("/documents").json()["documents"]}
        yield c
        after = {d["doc_id"] for d in c.get("/documents").json()["documents"]}
        assert c.before <= after  # nothing ingested before was lost


def pdf_bomb(inflated_mb: int) -> bytes:
    """A valid one-page PDF whose content stream inflates from a few KB to ``inflated_mb`` MB."""
    stream = zlib.compress(b"0 0 m " * (inflated_mb * 2**20 // 6), 9)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream"]
    out, offsets = b"%PDF-1.4\n", []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def zip_bomb() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.txt", b"\0" * (50 * 2**20))
    return buf.getvalue()


def test_hostile_files_are_skipped_with_their_reasons_and_good_ones_go_in(client):
    nested = "<html><body>" + "<div>" * 20000 + "deep text about otters" + "</div>" * 20000 + "</body></html>"
    files = [("files", ("bomb.zip", zip_bomb(), "application/zip")),
             ("files", ("bomb.pdf", pdf_bomb(200), "application/pdf")),
             ("files", ("nested.html", nested.encode(), "text/html")),
             ("files", ("latin1.txt", "Café crème, prix 3 € — invalid UTF-8 bytes: \xff\xfe".encode("latin-1", "replace"),
                        "text/plain")),
             ("files", ("nul.md", b"# Nul\n\nbefore\x00after, a NUL byte inside", "text/markdown")),
             ("files", ("fine.md", b"# Fine\n\nBeavers build dams from branches.", "text/markdown"))]
    r = client.post("/documents", files=files)
    assert r.status_code == 200, r.text
    skipped = {s["source"]: s["reason"] for s in r.json()["skipped"]}
    assert skipped["upload:bomb.zip"].startswith("unsupported file type")
    listed = {d["doc_id"] for d in client.get("/documents").json()["documents"]}
    assert "fine.md" in listed and "nested.html" in listed
    assert skipped["upload:bomb.pdf"].startswith("no text content")  # 200 MB inflated, read, and found empty
    assert "latin1.txt" in listed  # not UTF-8: decoded by the fallback, not dropped
    assert skipped["upload:nul.md"].startswith("binary content")
    hit = client.post("/search", json={"query": "deep text about otters", "mode": "bm25", "top_k": 1}).json()
    assert hit["hits"][0]["doc_id"] == "nested.html"


def test_hostile_json_documents_are_clear_4xx_or_stored_as_data(client):
    r = client.post("/documents", json={"documents": [
        {"id": "../../etc/passwd", "text": "Traversal in an id is only a name."},
        {"id": "nul", "text": "before\u0000after"},
        {"id": "long-token", "text": "word " + "x" * 1_000_000},
    ]})
    assert r.status_code == 200, r.text  # an id is a name in the index, never a path on disk
    listed = {d["doc_id"] for d in client.get("/documents").json()["documents"]}
    assert {"../../etc/passwd", "nul", "long-token"} <= listed
    assert client.delete("/documents/..%2F..%2Fetc%2Fpasswd").status_code == 200
    r = client.post("/search", json={"query": "x" * 1999, "mode": "bm25"})
    assert r.status_code == 200


@pytest.mark.parametrize("filters", [
    {"doc_id": ["x' OR '1'='1"]}, {"source": "'; DROP TABLE chunks; --"}, {"source": "%"},
    {"metadata": {"topic": "nutrition' OR 1=1 --"}}, {"doc_id": ["bm25.md\u0000"]},
])
def test_sql_looking_filter_values_are_plain_values(client, filters):
    r = client.post("/search", json={"query": "BM25 saturation", "filters": filters})
    assert r.status_code == 200, r.text
    assert r.json()["hits"] == []
    assert client.post("/search", json={"query": "BM25 saturation"}).json()["hits"]  # the index is intact
