"""Start-up: everything a first request needs loads before the service says it is ready, and the
real server starts from a shell without any HF_* variable (offline by construction)."""

import os
import signal
import subprocess
import sys
import time

import httpx
from fastapi.testclient import TestClient

from api.app import create_app
from rag import text
from rag.config import Settings
from tests.conftest import ROOT, free_port
from tests.test_cli import OFFLINE_VARS


def test_readyz_is_503_until_start_up_has_loaded_everything(fixture_index):
    app = create_app(Settings(_env_file=None, index_dir=fixture_index, llm_model="smollm2", reranker="none"))
    before = TestClient(app).get("/readyz")  # no lifespan yet: nothing loaded
    assert before.status_code == 503 and before.json()["detail"] == "loading models and index"
    with TestClient(app) as client:
        after = client.get("/readyz")
        assert after.status_code == 200 and after.json()["ready"] and after.json()["chunks"] > 0
        assert text._kiwi is not None  # Korean morphology loaded at start-up, not by the first Korean query
        assert app.state.engine.retriever.embedder._model is not None




def test_rag_serve_starts_offline_with_the_bundled_reranker(fixture_index):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS}
    env.update(RAG_LLM_MODEL="smollm2", RAG_LLM_CONTEXT_TOKENS="2048")
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--index", str(fixture_index), "--port",
                             str(port), "--log-level", "warning"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        ready = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert ready is not None and ready.status_code == 200, proc.stdout.read() if proc.poll() is not None else ""
        info = ready.json()
        assert info["reranker"] == "on (bundled minilm-l6-cross-encoder v1, int8)"
        assert info["generator"] == "local: smollm2"
        r = httpx.post(f"http://127.0.0.1:{port}/search", json={"query": "What does k1 control in BM25?", "top_k": 3},
                       timeout=60)
        body = r.json()
        assert r.status_code == 200 and body["reranked"] and body["hits"][0]["doc_id"] == "bm25.md"
        r = httpx.post(f"http://127.0.0.1:{port}/search", json={"query": "한국어 형태소 분석", "top_k": 3}, timeout=60)
        assert r.status_code == 200 and r.json()["query_lang"] == "ko" and not r.json()["reranked"]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal: -15 is its clean exit
    assert proc.returncode in (0, -signal.SIGTERM) and "huggingface.co" not in out and "Traceback" not in out, out
