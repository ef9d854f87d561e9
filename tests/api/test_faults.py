"""Faults the service must survive, each made real: an LLM backend that refuses connections,
hangs, sends garbage or dies mid-stream (a raw socket server on 127.0.0.1 misbehaving on purpose);
SIGTERM with answers in flight; a disk that fills up and an index directory that becomes read-only
during ingest; damaged index files at start-up; ``kill -9`` of the server during an upload."""

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from rag.config import Settings
from tests.conftest import ROOT, SlowLLM, free_port

QUESTION = {"question": "What does the parameter k1 control in BM25?"}
CHUNK = 'data: {"choices": [{"index": 0, "delta": {"content": "k1 controls "}, "finish_reason": null}]}\n\n'


@contextmanager
def bad_backend(mode: str):
    """An 'OpenAI-compatible' server on 127.0.0.1 that reads one request and then misbehaves:
    ``hang`` (never answers), ``garbage`` (200 with an HTML page), ``midstream`` (two deltas, then
    the connection drops), ``error`` (500). Yields its base URL."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve(conn):
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(65536)
            except OSError:
                return
            if mode == "hang":
                stop.wait(30)
            elif mode == "garbage":
                body = b"<html><body>502 Bad Gateway (proxy)</body></html>"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
            elif mode == "midstream":
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                data = CHUNK.encode()
                conn.sendall(head + (b"%x\r\n%s\r\n" % (len(data), data)) * 2)
                time.sleep(0.2)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            elif mode == "error":
                body = b'{"error": "model crashed"}'
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        server.close()


def _client(index_dir, base_url):
    settings = Settings(_env_file=None, index_dir=index_dir, generator="openai", llm_base_url=base_url,
                        llm_model="remote", llm_timeout=1.0, llm_retries=0, reranker="none", ui=False,
                        llm_context_tokens=4096, max_tokens=32)
    return TestClient(create_app(settings))


@pytest.mark.parametrize("mode, status, error, says", [
    ("refused", 502, "GeneratorError", "unreachable"),
    ("hang", 504, "GeneratorTimeout", "timed out after 1 s"),
    ("garbage", 502, "GeneratorError", "no chat stream (content-type text/html)"),
    ("midstream", 502, "GeneratorError", "closed the stream mid-answer"),
    ("error", 502, "GeneratorError", "answered 500"),
])
def test_a_failing_llm_backend_is_a_clear_error_and_the_service_stays_up(fixture_index, mode, status, error, says):
    with (bad_backend(mode) if mode != "refused" else _nothing_at()) as url, _client(fixture_index, url) as client:
        r = client.post("/ask", json=QUESTION)
        assert r.status_code == status and r.json()["error"] == error and says in r.json()["detail"], r.text
        with client.stream("POST", "/ask", json={**QUESTION, "stream": True}) as s:
            events = [line for line in s.iter_lines() if line.startswith("event:")]
        assert events[-1] == "event: error"  # a stream that began ends with an error event, not a cut
        assert client.get("/healthz").status_code == 200
        assert client.post("/search", json={"query": "BM25"}).status_code == 200
        assert client.app.state.slots.active == 0


@contextmanager
def _nothing_at():
    yield f"http://127.0.0.1:{free_port()}"


def test_sigterm_lets_answers_in_flight_finish_and_refuses_new_connections(fixture_index, smollm2):
    settings = Settings(_env_file=None, index_dir=fixture_index, llm_model="smollm2", llm_context_tokens=2048,
                        reranker="none", max_tokens=32, ui=False)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=20))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    app.state.engine.generator = SlowLLM(["k1 ", "controls ", "term ", "frequency ", "saturation ", "[1]."] * 3,
                                         0.15, smollm2.count_tokens)
    url = f"http://127.0.0.1:{port}"
    events = []
    with httpx.stream("POST", f"{url}/ask", json={**QUESTION, "stream": True}, timeout=30) as r:
        lines = r.iter_lines()
        events.append(next(line for line in lines if line.startswith("event:")))
        server.handle_exit(signal.SIGTERM, None)  # what uvicorn's signal handler does
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=2)
        events += [line for line in lines if line.startswith("event:")]
    thread.join(30)
    assert events[0] == "event: delta" and events[-1] == "event: answer"  # finished, not cut off
    assert not thread.is_alive()


def _cli(*args, env=None, preexec=None, timeout=300):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec)


def _corpus(tmp_path, n=40):
    docs = tmp_path / "more"
    docs.mkdir()
    for i in range(n):
        (docs / f"note-{i}.md").write_text(f"# Note {i}\n\n" + f"Paragraph {i} about storage limits. " * 60)
    return docs


def _version_and_counts(index_dir):
    from rag.index.store import Index

    index = Index.open(index_dir)
    try:
        return index.version, dict(index.manifest["counts"])
    finally:
        index.close()


def test_a_disk_that_fills_up_during_ingest_leaves_the_previous_version_served(fixture_index, tmp_path):
    index = tmp_path / "ix"
    shutil.copytree(fixture_index, index)
    before = _version_and_counts(index)

    version = index / (index / "CURRENT").read_text().strip()
    limit = max(f.stat().st_size for f in version.iterdir()) + 4096  # copies fit; the new version does not

    def small_disk():  # no file may grow past the limit (EFBIG), as on a disk that is full (ENOSPC)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = _cli("ingest", str(_corpus(tmp_path)), "--index", str(index), "-q", preexec=small_disk)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "cannot write index version" in r.stderr and f"version {before[0]} is still the committed one" in r.stderr
    assert _version_and_counts(index) == before
    assert not [p.name for p in index.iterdir() if p.name.startswith(".tmp")]  # nothing half-written left


def test_a_read_only_index_directory_fails_writes_clearly_and_keeps_serving(fixture_index, tmp_path):
    index = tmp_path / "ix"
    shutil.copytree(fixture_index, index)
    before = _version_and_counts(index)
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(index), str(index)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot make a read-only bind mount here: {mounted.stderr.decode().strip()}")
    try:
        r = _cli("ingest", str(_corpus(tmp_path, 3)), "--index", str(index), "-q")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert "cannot write to index directory" in r.stderr and "Read-only file system" in r.stderr, r.stderr
        with TestClient(create_app(Settings(_env_file=None, index_dir=index, llm_model="smollm2", ui=False,
                                            reranker="none", llm_context_tokens=2048))) as client:
            r = client.post("/documents", json={"documents": [{"id": "x", "text": "Refunds take 14 days."}]})
            assert r.status_code == 507 and r.json()["error"] == "IndexWriteError"
            assert client.post("/search", json={"query": "BM25"}).status_code == 200
            assert client.get("/readyz").json()["index_version"] == before[0]
    finally:
        subprocess.run(["umount", "--lazy", str(index)], check=True)
    assert _version_and_counts(index) == before


@pytest.mark.parametrize("name, damage", [
    ("dense.faiss", "truncate"), ("chunks.sqlite", "truncate"), ("bm25.npz", "truncate"),
    ("manifest.json", "garbage"), ("dense.faiss", "remove"),
])
def test_a_damaged_index_file_at_start_up_is_named_never_a_traceback(fixture_index, tmp_path, name, damage):
    index = tmp_path / "ix"
    shutil.copytree(fixture_index, index)
    version = index / (index / "CURRENT").read_text().strip()
    target = version / name
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[: max(1, target.stat().st_size // 3)])
    elif damage == "garbage":
        target.write_text("{not json")
    else:
        target.unlink()
    r = _cli("search", "BM25", "--index", str(index))
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout and name in r.stderr, r.stderr
    with TestClient(create_app(Settings(_env_file=None, index_dir=index, llm_model="smollm2", ui=False,
                                        reranker="none", llm_context_tokens=2048))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and name in ready.json()["detail"]
        assert client.get("/healthz").status_code == 200  # up, not ready, saying why


def _serve(index, port):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_LLM_MODEL": "smollm2", "RAG_LLM_CONTEXT_TOKENS": "2048",
           "RAG_RERANKER": "none", "RAG_UI": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--index", str(index), "--port", str(port),
                             "--log-level", "warning"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("rag serve did not become ready")


def test_kill_9_during_an_upload_serves_nothing_half_written_after_restart(fixture_index, tmp_path):
    index = tmp_path / "ix"
    shutil.copytree(fixture_index, index)
    before = _version_and_counts(index)
    port = free_port()
    proc = _serve(index, port)
    url = f"http://127.0.0.1:{port}"
    try:
        docs = [{"id": f"bulk-{i}", "text": f"Bulk document {i} on storage and retention. " * 80} for i in range(300)]
        job = httpx.post(f"{url}/documents", params={"wait": 0}, json={"documents": docs}, timeout=60).json()
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/jobs/{job['id']}", timeout=10).json()["stage"] != "embed":
            assert time.monotonic() < deadline, "the upload never reached the embedding stage"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = _serve(index, port)  # the lock died with the process: the index opens and takes writes
    try:
        ready = httpx.get(f"{url}/readyz", timeout=10).json()
        assert (ready["index_version"], ready["documents"], ready["chunks"]) == (
            before[0], before[1]["documents"], before[1]["chunks"])
        r = httpx.post(f"{url}/documents", json={"documents": docs[:2]}, timeout=120)
        assert r.status_code == 200 and r.json()["added"] == 2 and r.json()["index_version"] == before[0] + 1
    finally:
        proc.terminate()
        proc.wait(60)
