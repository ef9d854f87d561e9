"""HTTP latency of the live service on the bundled corpus: POST /search, and POST /ask per local LLM.

    python -m eval.bench_api [--index indexes/default] [--models qwen2.5-0.5b,qwen2.5-1.5b]
        [--search-rounds 10]

For each model a real ``rag serve`` process is started on 127.0.0.1 (a free port) and asked, over
HTTP, the questions of ``eval/data/corpus_questions.jsonl`` (10 English, 6 Korean). /search is
timed client-side (request to full JSON); /ask streams (SSE) and its TTFT is the time from the
request to the first ``delta`` event, as a user sees it. Also the server's resident memory after
loading and after answering. Writes eval/results/bench_api.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from eval.common import RESULTS, ROOT, read_jsonl, write_json
from eval.retrieval import percentile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def p50_p95(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    return {"p50": round(statistics.median(values), 1), "p95": round(percentile(values, 0.95), 1)}


class Server:
    """``rag serve`` in a child process, ready when /readyz says so."""

    def __init__(self, index: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--index", str(index), "--port",
                                      str(self.port), "--log-level", "warning"], cwd=ROOT,
                                     env={**os.environ, **env})

    def wait_ready(self, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=2)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError("server not ready")

    def rss_mb(self) -> float:
        return round(psutil.Process(self.proc.pid).memory_info().rss / 2**20, 1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def ask_stream(client: httpx.Client, question: str) -> dict:
    t0 = time.perf_counter()
    ttft = None
    final = None
    event = None
    with client.stream("POST", "/ask", json={"question": question, "stream": True}, timeout=600) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "delta" and ttft is None:
                ttft = (time.perf_counter() - t0) * 1000
            elif line.startswith("data:") and event == "answer":
                final = json.loads(line[5:])
    total = (time.perf_counter() - t0) * 1000
    return {"ttft_ms": ttft, "total_ms": total, "refused": final["refused"] if final else None,
            "citations": len(final["citations"]) if final else 0, "server": final["timings_ms"] if final else {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, default=Path("indexes/default"))
    ap.add_argument("--models", default="qwen2.5-0.5b,qwen2.5-1.5b")
    ap.add_argument("--search-rounds", type=int, default=10)
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_api.json")
    args = ap.parse_args()
    questions = list(read_jsonl(ROOT / "eval" / "data" / "corpus_questions.jsonl"))
    result: dict = {"index": str(args.index), "questions": len(questions), "models": {}}
    lines = ["| model | RSS loaded MB | RSS after MB | /ask TTFT p50 / p95 ms | /ask total p50 / p95 ms | "
             "refused | answered with citations |", "|---|---:|---:|---:|---:|---:|---:|"]
    for i, model in enumerate(m for m in args.models.split(",") if m):
        server = Server(args.index, {"RAG_LLM_MODEL": model})
        try:
            ready = server.wait_ready()
            rss_loaded = server.rss_mb()
            with httpx.Client(base_url=server.url) as client:
                if i == 0:  # /search does not depend on the LLM: measure it once
                    for q in questions[:3]:
                        client.post("/search", json={"query": q["text"], "top_k": 10})
                    times = []
                    for _ in range(args.search_rounds):
                        for q in questions:
                            t = time.perf_counter()
                            r = client.post("/search", json={"query": q["text"], "top_k": 10})
                            r.raise_for_status()
                            times.append((time.perf_counter() - t) * 1000)
                    result["search_ms"] = p50_p95(times) | {"requests": len(times)}
                    result["reranker"] = ready.get("reranker")
                asks = [ask_stream(client, q["text"]) | {"id": q["id"], "lang": q["lang"]} for q in questions]
            ttft = [a["ttft_ms"] for a in asks if a["ttft_ms"] is not None]
            total = [a["total_ms"] for a in asks]
            result["models"][model] = {"rss_loaded_mb": rss_loaded, "rss_after_mb": server.rss_mb(),
                                       "ttft_ms": p50_p95(ttft), "total_ms": p50_p95(total),
                                       "refused": sum(bool(a["refused"]) for a in asks),
                                       "answered_with_citations": sum(a["citations"] > 0 for a in asks),
                                       "asks": asks}
            m = result["models"][model]
            lines.append(f"| {model} | {m['rss_loaded_mb']:.0f} | {m['rss_after_mb']:.0f} | "
                         f"{m['ttft_ms']['p50']} / {m['ttft_ms']['p95']} | {m['total_ms']['p50']} / "
                         f"{m['total_ms']['p95']} | {m['refused']}/{len(asks)} | {m['answered_with_citations']}/{len(asks)} |")
        finally:
            server.stop()
    s = result.get("search_ms", {})
    lines += ["", f"POST /search over HTTP ({s.get('requests')} requests, top_k 10, reranker "
              f"{result.get('reranker')}): p50 {s.get('p50')} ms, p95 {s.get('p95')} ms.",
              "", "Command: `python -m eval.bench_api`", ""]
    write_json(args.out, result)
    args.out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
