"""Load with writes: searches, answers, API writes and a CLI ingest at once, on one live index.

    python -m eval.bench_load [--seconds 180] [--search-clients 4] [--ask-clients 2] [--model qwen2.5-1.5b]
    python -m eval.bench_load --soak --seconds 1800      # the soak: memory, file descriptors, threads

A real ``rag serve`` (127.0.0.1, a free port) serves a fresh index of the bundled corpus. For
``--seconds``, concurrently:

- search clients ``POST /search`` (hybrid, English and Korean questions);
- ask clients ``POST /ask``, streamed and not, in turn;
- one API writer adds, changes and deletes documents of its own pool through ``POST /documents``
  (JSON and multipart uploads, in turn) and ``DELETE /documents/{id}``, waiting for each job;
- one CLI writer changes files of its own folder and runs ``rag ingest`` (and ``--delete``) on the
  same index directory; the service swaps each version in (``RAG_INDEX_REFRESH_S``).

Every document text carries a token unique to its id and revision. Checked at the end: no request
failed (any status other than 2xx, or a transport error); the documents listed are exactly the
corpus plus what each writer last wrote, none twice; each document's chunks in the final version
hold its last revision's token and no older one, and BM25 finds each document by that token; every
citation of every answer names a chunk of that document in the index version the answer reports
(versions are read from disk as the answers arrive). The server's resident memory, open file
descriptors and threads are sampled every few seconds; the soak reports the first and last ten
minutes side by side. Writes ``eval/results/bench_load.{json,md,png}`` (``soak.*`` with ``--soak``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from eval.bench_api import Server
from eval.common import RESULTS, ROOT, cpu_info, read_jsonl, write_json
from eval.retrieval import percentile
from rag.index.layout import current_version_dir

QUESTIONS = [q["text"] for q in read_jsonl(ROOT / "eval" / "data" / "corpus_questions.jsonl")]
TOPICS = ["sourdough starters", "tidal power", "beekeeping in winter", "glacier retreat", "vinyl records",
          "오로라 관측", "김치 발효", "한옥 난방"]


@dataclass
class Run:
    """What the clients saw: latencies and failures per endpoint, answers to check, samples."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[dict] = field(default_factory=list)
    citations: list[tuple[int, str, str]] = field(default_factory=list)  # (version, doc_id, chunk_id)
    answers: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    writes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: list[dict] = field(default_factory=list)

    def record(self, endpoint: str, started: float, status: int | None, detail: str = "") -> bool:
        self.latencies[endpoint].append((time.perf_counter() - started) * 1000)
        if status is None or not 200 <= status < 300:
            self.failures.append({"endpoint": endpoint, "status": status, "detail": detail[:300]})
            return False
        return True


def doc_text(doc_id: str, rev: int, topic: str) -> tuple[str, str]:
    """A document's text with its revision token (one BM25 term, unique to id and revision)."""
    token = f"zq{zlib.crc32(doc_id.encode()) % 10**6}r{rev}"
    body = (f"Notes on {topic}. Revision marker {token}. " +
            " ".join(f"Paragraph {i} about {topic} and how it changes over the seasons." for i in range(rev % 5 + 2)))
    return token, body


# --- clients ---------------------------------------------------------------------------------
async def searcher(client: httpx.AsyncClient, run: Run, deadline: float, rnd: random.Random) -> None:
    while time.monotonic() < deadline:
        t = time.perf_counter()
        try:
            r = await client.post("/search", json={"query": rnd.choice(QUESTIONS + TOPICS), "top_k": 10})
            run.record("/search", t, r.status_code, r.text)
        except httpx.HTTPError as exc:
            run.record("/search", t, None, repr(exc))


async def asker(client: httpx.AsyncClient, run: Run, deadline: float, rnd: random.Random) -> None:
    stream = False
    while time.monotonic() < deadline:
        stream = not stream
        question = rnd.choice(QUESTIONS + [f"What do the notes say about {t}?" for t in TOPICS])
        endpoint = "/ask (stream)" if stream else "/ask"
        t = time.perf_counter()
        try:
            body = await (_ask_stream(client, question) if stream else _ask(client, question))
        except (httpx.HTTPError, RuntimeError) as exc:
            run.record(endpoint, t, None, repr(exc))
            continue
        if run.record(endpoint, t, body.pop("_status"), json.dumps(body)[:300]):
            run.answers["refused" if body["refused"] else "answered"] += 1
            run.citations += [(body["index_version"], c["doc_id"], c["chunk_id"]) for c in body["citations"]]


async def _ask(client: httpx.AsyncClient, question: str) -> dict:
    r = await client.post("/ask", json={"question": question})
    return {"_status": r.status_code, **(r.json() if r.status_code == 200 else {"error": r.text})}


async def _ask_stream(client: httpx.AsyncClient, question: str) -> dict:
    event, final = None, None
    async with client.stream("POST", "/ask", json={"question": question, "stream": True}) as r:
        if r.status_code != 200:
            return {"_status": r.status_code, "error": (await r.aread()).decode(errors="replace")}
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("answer", "error"):
                final = (event, json.loads(line[5:]))
    if final is None or final[0] != "answer":
        raise RuntimeError(f"stream ended without an answer: {final}")
    return {"_status": 200, **final[1]}


class ApiWriter:
    """Adds, changes and deletes documents of its own pool through the API; knows what it left."""

    def __init__(self, client: httpx.AsyncClient, run: Run, pool: int, rnd: random.Random) -> None:
        self.client, self.run, self.rnd = client, run, rnd
        self.ids = [f"api/doc-{i}" for i in range(pool)] + [f"upload-{i}.md" for i in range(pool // 4)]
        self.state: dict[str, tuple[int, str]] = {}  # doc_id -> (revision, token)

    async def loop(self, deadline: float, pause: float) -> None:
        while time.monotonic() < deadline:
            doc_id = self.rnd.choice(self.ids)
            if doc_id in self.state and self.rnd.random() < 0.3:
                await self._delete(doc_id)
            else:
                await self._put(doc_id)
            await asyncio.sleep(pause)

    async def _put(self, doc_id: str) -> None:
        rev = self.state.get(doc_id, (0, ""))[0] + 1
        token, text = doc_text(doc_id, rev, self.rnd.choice(TOPICS))
        t = time.perf_counter()
        try:
            if doc_id.startswith("upload-"):
                files = [("files", (doc_id, f"# {doc_id}\n\n{text}\n".encode(), "text/markdown"))]
                r = await self.client.post("/documents", files=files)
            else:
                r = await self.client.post("/documents", json={"documents": [{"id": doc_id, "text": text}]})
            status = await self._finished(r)
        except httpx.HTTPError as exc:
            self.run.record("POST /documents", t, None, repr(exc))
            return
        if self.run.record("POST /documents", t, status, r.text):
            self.state[doc_id] = (rev, token)
            self.run.writes["api " + ("changed" if rev > 1 else "added")] += 1

    async def _delete(self, doc_id: str) -> None:
        t = time.perf_counter()
        try:
            r = await self.client.delete(f"/documents/{doc_id}")
            status = await self._finished(r)
        except httpx.HTTPError as exc:
            self.run.record("DELETE /documents", t, None, repr(exc))
            return
        if self.run.record("DELETE /documents", t, status, r.text):
            del self.state[doc_id]
            self.run.writes["api deleted"] += 1

    async def _finished(self, r: httpx.Response) -> int:
        """The write's final status: 200 at once, or its job polled until it ends (202)."""
        while r.status_code == 202 or (r.status_code == 200 and r.json().get("status") in ("queued", "running")):
            await asyncio.sleep(0.5)
            r = await self.client.get(r.headers.get("location") or f"/jobs/{r.json()['id']}")
            if r.json().get("status") == "succeeded":
                return 200
            if r.json().get("status") in ("failed", "cancelled"):
                return 500
        return r.status_code


class CliWriter:
    """Changes files in its own folder and runs ``rag ingest`` (and ``--delete``) on the index; the
    document ids are the file names (relative to the folder)."""

    def __init__(self, folder: Path, index: Path, env: dict[str, str], run: Run, pool: int,
                 rnd: random.Random) -> None:
        self.folder, self.index, self.env, self.run, self.rnd = folder, index, env, run, rnd
        self.names = [f"cli-{i}.md" for i in range(pool)]
        self.state: dict[str, tuple[int, str]] = {}
        folder.mkdir(parents=True)

    async def loop(self, deadline: float, pause: float) -> None:
        on_disk: dict[str, tuple[int, str]] = {}  # what the folder holds; ingested when an ingest succeeds
        while time.monotonic() < deadline:
            name = self.rnd.choice(self.names)
            if name in self.state and name in on_disk and self.rnd.random() < 0.3:
                if await self._ingest("--delete", name):
                    (self.folder / name).unlink()
                    del on_disk[name], self.state[name]
                    self.run.writes["cli deleted"] += 1
            else:
                rev = on_disk.get(name, (0, ""))[0] + 1
                token, text = doc_text(name, rev, self.rnd.choice(TOPICS))
                (self.folder / name).write_text(f"# {name}\n\n{text}\n", encoding="utf-8")
                on_disk[name] = (rev, token)
                if await self._ingest(str(self.folder)):
                    self.run.writes["cli " + ("changed" if name in self.state else "added")] += 1
                    self.state = dict(on_disk)
            await asyncio.sleep(pause)

    async def _ingest(self, *args: str) -> bool:
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rag.cli", "ingest", *args, "--index", str(self.index), "--quiet",
            cwd=self.folder.parent, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = await proc.communicate()
        return self.run.record("rag ingest (CLI)", t, 200 if proc.returncode == 0 else proc.returncode,
                               out.decode(errors="replace")[-300:])


async def _prompt_cache_mb(client: httpx.AsyncClient) -> float:
    """The LLM's saved prompt states (bounded by RAG_LLM_PROMPT_CACHE_MB): memory held on purpose."""
    try:
        text = (await client.get("/metrics", timeout=30)).text
    except httpx.HTTPError:
        return float("nan")
    line = next((x for x in text.splitlines() if x.startswith("rag_llm_prompt_cache_bytes ")), "x 0")
    return round(float(line.split()[1]) / 2**20, 1)


async def sampler(server: Server, client: httpx.AsyncClient, run: Run, deadline: float, every: float) -> None:
    proc, t0 = psutil.Process(server.proc.pid), time.monotonic()
    while time.monotonic() < deadline:
        rss = round(proc.memory_info().rss / 2**20, 1)
        cache = await _prompt_cache_mb(client)
        run.samples.append({"t_s": round(time.monotonic() - t0, 1), "rss_mb": rss, "prompt_cache_mb": cache,
                            "rss_less_cache_mb": round(rss - cache, 1), "fds": proc.num_fds(),
                            "threads": proc.num_threads()})
        await asyncio.sleep(every)


# --- checks ----------------------------------------------------------------------------------
def check_citations(index: Path, citations: list[tuple[int, str, str]]) -> dict:
    """Each cited chunk in the version the answer was given from (read from that version's store)."""
    by_version: dict[int, set[tuple[str, str]]] = defaultdict(set)
    for version, doc_id, chunk_id in citations:
        by_version[version].add((chunk_id, doc_id))
    bad, missing_versions = [], []
    for version, cited in by_version.items():
        store = index / f"v{version:06d}" / "chunks.sqlite"
        if not store.exists():
            missing_versions.append(version)
            continue
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            rows = set(db.execute("SELECT chunk_id, doc_id FROM chunks").fetchall())
        bad += [(version, *c) for c in cited - rows]
    return {"citations": len(citations), "versions": len(by_version), "not_in_their_version": bad,
            "versions_collected_before_check": missing_versions}


def check_documents(url: str, index: Path, corpus_ids: set[str], writers: list) -> dict:
    """The final index against what was sent: the same documents, each once, at its last revision."""
    expected: dict[str, str] = {d: "" for d in corpus_ids}
    for writer in writers:
        expected.update({d: token for d, (_, token) in writer.state.items()})
    listed = httpx.get(url + "/documents", params={"limit": 1000}, timeout=60).json()
    ids = [d["doc_id"] for d in listed["documents"]]
    store = current_version_dir(index) / "chunks.sqlite"
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        texts: dict[str, str] = defaultdict(str)
        for doc_id, text in db.execute("SELECT doc_id, text FROM chunks"):
            texts[doc_id] += text + "\n"
        chunk_ids = [r[0] for r in db.execute("SELECT chunk_id FROM chunks")]
    stale = [d for d, token in expected.items() if token and (token not in texts[d]
             or texts[d].count("Revision marker") != texts[d].count(token))]
    unfound = []
    for d, token in expected.items():
        if token:
            hits = httpx.post(url + "/search", json={"query": token, "mode": "bm25", "top_k": 1}, timeout=60).json()
            if not hits["hits"] or hits["hits"][0]["doc_id"] != d:
                unfound.append(d)
    return {"expected": len(expected), "listed": len(ids), "total": listed["total"],
            "lost": sorted(set(expected) - set(ids)), "unexpected": sorted(set(ids) - set(expected)),
            "listed_twice": len(ids) - len(set(ids)), "chunk_ids_twice": len(chunk_ids) - len(set(chunk_ids)),
            "chunks_of_unlisted_docs": sorted(set(texts) - set(ids)), "stale_or_mixed": stale,
            "not_found_by_token": unfound}


# --- the run ---------------------------------------------------------------------------------
async def drive(server: Server, args, index: Path, work: Path, env: dict[str, str], run: Run) -> list:
    rnd = random.Random(args.seed)
    deadline = time.monotonic() + args.seconds
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=server.url, timeout=args.request_timeout, limits=limits) as client:
        api = ApiWriter(client, run, args.pool, random.Random(rnd.random()))
        cli = CliWriter(work / "cli", index, env, run, max(2, args.pool // 4), random.Random(rnd.random()))
        tasks = [searcher(client, run, deadline, random.Random(rnd.random())) for _ in range(args.search_clients)]
        tasks += [asker(client, run, deadline, random.Random(rnd.random())) for _ in range(args.ask_clients)]
        tasks += [api.loop(deadline, args.write_pause), cli.loop(deadline, args.write_pause * 3),
                  sampler(server, client, run, deadline + 5, args.sample_every), progress(run, deadline, args.seconds)]
        await asyncio.gather(*tasks)
    return [api, cli]


async def progress(run: Run, deadline: float, seconds: float) -> None:
    while time.monotonic() < deadline:
        await asyncio.sleep(min(30.0, seconds / 10))
        done = {k: len(v) for k, v in run.latencies.items()}
        print(f"  {seconds - max(0.0, deadline - time.monotonic()):.0f}/{seconds:.0f} s: {done}, "
              f"failures {len(run.failures)}", flush=True)


def summarise(run: Run, seconds: float) -> dict:
    out = {}
    for endpoint, values in sorted(run.latencies.items()):
        out[endpoint] = {"requests": len(values), "failed": sum(f["endpoint"] == endpoint for f in run.failures),
                         "p50_ms": round(statistics.median(values), 1), "p95_ms": round(percentile(values, 0.95), 1),
                         "per_s": round(len(values) / seconds, 2)}
    return out


RESOURCES = ("rss_mb", "prompt_cache_mb", "rss_less_cache_mb", "fds", "threads")


def resources(samples: list[dict], window_s: float) -> dict:
    """Median RSS, fds and threads over the first and the last ``window_s`` seconds of the run."""
    if not samples:
        return {}
    end = samples[-1]["t_s"]
    first = [s for s in samples if s["t_s"] <= window_s]
    last = [s for s in samples if s["t_s"] >= end - window_s]
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    return {k: {"first": med(first, k), "last": med(last, k), "max": max(s[k] for s in samples),
                "slope_mb_per_h": _slope(samples, k, end * 2 / 3)} for k in RESOURCES} | {
        "window_s": window_s, "samples": len(samples), "slope_from_s": round(end * 2 / 3),
        "by_5_min": _by_window(samples, 300.0)}


def _signed(value: float) -> str:
    return "-" if value != value else f"{value:+.1f}"


def _slope(samples: list[dict], key: str, since_s: float) -> float:
    """Least-squares growth per hour over the samples after ``since_s`` (the run's last third: the
    prompt-state cache and the allocator have settled by then, a leak has not)."""
    import numpy as np

    rows = [s for s in samples if s["t_s"] >= since_s and s.get(key) == s.get(key)]
    if len(rows) < 3:
        return float("nan")
    return round(float(np.polyfit([s["t_s"] for s in rows], [s[key] for s in rows], 1)[0]) * 3600, 1)


def _by_window(samples: list[dict], width: float) -> list[dict]:
    out = []
    for start in range(0, int(samples[-1]["t_s"]) + 1, int(width)):
        rows = [s for s in samples if start <= s["t_s"] < start + width]
        if rows:
            out.append({"from_min": start // 60} | {k: round(statistics.median(r[k] for r in rows), 1)
                                                    for k in RESOURCES})
    return out


def plot(samples: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 6.5), sharex=True)
    t = [s["t_s"] / 60 for s in samples]
    axes[0].plot(t, [s["rss_mb"] for s in samples], lw=1.2, label="resident")
    axes[0].plot(t, [s["prompt_cache_mb"] for s in samples], lw=1.2, label="of which saved prompt states")
    axes[0].legend(loc="lower right", fontsize=8)
    for ax, key, label in zip(axes, ("rss_mb", "fds", "threads"), ("MB", "open fds", "threads")):
        if key != "rss_mb":
            ax.plot(t, [s[key] for s in samples], lw=1.2)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(result: dict, name: str) -> str:
    rows = ["| endpoint | requests | failed | p50 ms | p95 ms | per s |", "|---|---:|---:|---:|---:|---:|"]
    rows += [f"| {e} | {s['requests']} | {s['failed']} | {s['p50_ms']} | {s['p95_ms']} | {s['per_s']} |"
             for e, s in result["endpoints"].items()]
    d, c, r = result["documents"], result["citations"], result["resources"]
    lines = [f"# {'Soak' if result['soak'] else 'Load with writes'}", "",
             f"CPU: {result['cpu']}. Model {result['model']}, {result['seconds']} s, {result['search_clients']} "
             f"search and {result['ask_clients']} ask clients, one API writer and one CLI writer.", "", *rows, "",
             f"Writes: {dict(result['writes'])}. Answers: {dict(result['answers'])}.", "",
             "| check | result |", "|---|---|",
             f"| failed requests | {len(result['failures'])} |",
             f"| documents expected / listed | {d['expected']} / {d['listed']} |",
             f"| lost, unexpected, listed twice | {len(d['lost'])}, {len(d['unexpected'])}, {d['listed_twice']} |",
             f"| chunk ids twice, chunks of unlisted documents | {d['chunk_ids_twice']}, "
             f"{len(d['chunks_of_unlisted_docs'])} |",
             f"| stale or mixed revisions, not found by their token | {len(d['stale_or_mixed'])}, "
             f"{len(d['not_found_by_token'])} |",
             f"| citations checked in their version (versions) | {c['citations']} ({c['versions']}) |",
             f"| citations not in their version | {len(c['not_in_their_version'])} |"]
    if r and not result["soak"]:  # three minutes show the start-up, not a trend: no growth figures
        r = {k: v for k, v in r.items() if k != "by_5_min"} | {k: {**r[k], "slope_mb_per_h": float("nan")}
                                                              for k in RESOURCES}
    if r:
        lines += ["", f"Server resources, median of the first and the last {r['window_s']:.0f} s "
                  f"({r['samples']} samples):", "", "| | first | last | max |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {r[k]['first']:.1f} | {r[k]['last']:.1f} | {r[k]['max']:.1f} | "
                  f"{_signed(r[k].get('slope_mb_per_h', float('nan')))} |" for k in RESOURCES]
        lines[-len(RESOURCES) - 2:-len(RESOURCES)] = [
            f"| | first | last | max | growth per hour after {r.get('slope_from_s', 0) / 60:.0f} min |",
            "|---|---:|---:|---:|---:|"]
        if r.get("by_5_min"):
            lines += ["", "Medians by 5 minutes (prompt_cache_mb: saved LLM prompt states, bounded by "
                      "RAG_LLM_PROMPT_CACHE_MB):", "", "| from minute | " + " | ".join(RESOURCES) + " |",
                      "|---:|" + "---:|" * len(RESOURCES)]
            lines += [f"| {w['from_min']} | " + " | ".join(f"{w[k]:.1f}" for k in RESOURCES) + " |"
                      for w in r["by_5_min"]]
        lines += ["", f"![resources]({name}.png)"]
    lines += ["", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def render(path: Path) -> None:
    """The Markdown report and plot of a finished run, from its JSON (the figures are the run's)."""
    import json

    result = json.loads(path.read_text(encoding="utf-8"))
    result["resources"] = resources(result["samples"], result["resources"]["window_s"])
    write_json(path, result)
    plot(result["samples"], path.with_suffix(".png"), f"{'Soak' if result['soak'] else 'Load'}: the server process")
    path.with_suffix(".md").write_text(report(result, path.stem), encoding="utf-8")
    print(report(result, path.stem))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--search-clients", type=int, default=4)
    ap.add_argument("--ask-clients", type=int, default=2)
    ap.add_argument("--model", default="qwen2.5-1.5b", help="RAG_LLM_MODEL of the server")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--pool", type=int, default=24, help="Documents the API writer cycles through")
    ap.add_argument("--write-pause", type=float, default=1.0)
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--request-timeout", type=float, default=600)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--soak", action="store_true", help="Name the report soak.* and compare the first and last 10 min")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--render", type=Path, default=None, help="Only write the report of an earlier run's JSON")
    args = ap.parse_args()
    if args.render:
        render(args.render)
        return
    name = "soak" if args.soak else "bench_load"
    out = args.out or RESULTS / f"{name}.json"
    with tempfile.TemporaryDirectory(prefix="rag-load-") as tmp:
        work = Path(tmp)
        index = work / "index"
        # Every version stays on disk for the run, so that each answer's citations can be checked in it.
        env = {"RAG_KEEP_VERSIONS": "100000", "RAG_LLM_MODEL": args.model, "RAG_MAX_TOKENS": str(args.max_tokens),
               "RAG_INDEX_REFRESH_S": "1", "RAG_MAX_QUEUED_GENERATIONS": str(args.ask_clients + 2),
               "HF_HUB_OFFLINE": "1"}
        full_env = {**os.environ, **env}
        subprocess.run([sys.executable, "-m", "rag.cli", "ingest", "corpus", "--index", str(index), "--quiet"],
                       cwd=ROOT, env=full_env, check=True)
        server = Server(index, env)
        run = Run()
        try:
            ready = server.wait_ready()
            corpus_ids = {d["doc_id"] for d in httpx.get(server.url + "/documents", params={"limit": 1000}).json()
                          ["documents"]}
            print(f"serving {ready['documents']} documents, {ready['chunks']} chunks at {server.url}; "
                  f"running {args.seconds:.0f} s", flush=True)
            writers = asyncio.run(drive(server, args, index, work, full_env, run))
            time.sleep(2)  # the last CLI version is swapped in within RAG_INDEX_REFRESH_S
            documents = check_documents(server.url, index, corpus_ids, writers)
            citations = check_citations(index, run.citations)
        finally:
            server.stop()
    window = min(600.0, args.seconds / 3)
    result = {"cpu": cpu_info(), "model": args.model, "seconds": args.seconds, "soak": args.soak,
              "search_clients": args.search_clients, "ask_clients": args.ask_clients,
              "endpoints": summarise(run, args.seconds), "failures": run.failures, "writes": run.writes,
              "answers": run.answers, "documents": documents, "citations": citations,
              "resources": resources(run.samples, window), "samples": run.samples,
              "command": "python -m eval.bench_load " + " ".join(sys.argv[1:])}
    write_json(out, result)
    plot(run.samples, out.with_suffix(".png"), f"{'Soak' if args.soak else 'Load'}: the server process")
    text = report(result, out.stem)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)
    ok = (not run.failures and not documents["lost"] and not documents["unexpected"] and not documents["listed_twice"]
          and not documents["chunk_ids_twice"] and not documents["stale_or_mixed"] and not documents["not_found_by_token"]
          and not citations["not_in_their_version"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
