"""The file backend and the Milvus backend side by side: retrieval quality (nDCG@10 for bm25, dense,
hybrid), ingest time and search latency, on the same data in one run.

    python -m eval.bench_backends --scifact ../shared/data/scifact \
        --korquad ../shared/data/korquad1_dev/KorQuAD_v1.0_dev.json --korquad-limit 500

Writes eval/results/backends.json and .md. Indexes are built in a temporary directory in memory
(/dev/shm when there is one) and removed afterwards: no derived copy of a data set stays on disk.
The Milvus backend runs on Milvus Lite (embedded, ``milvus.db`` inside the index directory).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from eval.common import cpu_info, write_json
from eval.retrieval import evaluate_mode, parse_modes
from ingest.pipeline import ingest_dataset
from rag.config import Settings
from rag.datasets import RetrievalSet, load_beir, load_korquad
from rag.models.embedder import make_embedder
from rag.retrieval.factory import build_retriever

BACKENDS = ("files", "milvus")
MODES = "bm25,dense,hybrid"


class MemoEmbedder:
    """The embedder with its passage vectors kept by text: the second backend's ingest reuses the
    first one's vectors, so the run embeds the corpus once (and both indexes hold the same vectors)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.memo = inner, {}
        for attr in ("name", "dim", "max_tokens", "overhead", "fingerprint"):
            setattr(self, attr, getattr(inner, attr))

    def load(self) -> None:
        self.inner.load()

    def count_tokens(self, texts):
        return self.inner.count_tokens(texts)

    def embed_documents(self, texts, batch_size: int = 32):
        todo = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if todo:
            for t, v in zip(todo, self.inner.embed_documents(todo, batch_size)):
                self.memo[t] = v
        return np.stack([self.memo[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text: str):
        return self.inner.embed_query(text)


def bench_dataset(data: RetrievalSet, embedder_name: str, work: Path) -> dict[str, Any]:
    """Both indexes built first (the corpus embedded once), then each mode timed on both backends
    one after the other, so that a change in the machine's load hits both alike."""
    embedder = MemoEmbedder(make_embedder(embedder_name, 2))
    embedder.load()
    out: dict[str, Any] = {"dataset": data.name, "queries": len(data.queries), "embedder": embedder_name,
                           "backends": {}}
    retrievers = {}
    for backend in BACKENDS:
        settings = Settings(_env_file=None, embedder=embedder_name, backend=backend, reranker="none")
        index_dir = work / f"{data.name}-{backend}".replace("/", "_")
        t = time.perf_counter()
        report = ingest_dataset(data, index_dir, settings, progress=False, embedder=embedder)
        out["backends"][backend] = {"ingest_seconds": round(time.perf_counter() - t, 1),
                                    "chunks": report.chunks_total, "embed_seconds": round(report.embed_seconds, 1),
                                    "modes": {}}
        retrievers[backend] = (build_retriever(settings, index_dir, rerank=False, embedder=embedder), settings)
        print(f"{data.name} {backend}: ingest {out['backends'][backend]['ingest_seconds']} s", flush=True)
    for spec in parse_modes(MODES):
        for backend, (retriever, settings) in retrievers.items():
            r = evaluate_mode(retriever, data, spec, settings, progress=False)
            lat = r["latency_ms"]
            out["backends"][backend]["modes"][spec.label] = {
                "nDCG@10": r["metrics"]["nDCG@10"], "search_ms": lat["total"],
                "first_stage_ms": {k: v for k, v in lat.items() if k in ("bm25", "dense", "embed")}}
            print(f"  {spec.label} {backend}: nDCG@10 {r['metrics']['nDCG@10']:.4f} p50 {lat['total']['p50']:.1f} ms",
                  flush=True)
    for backend in BACKENDS:
        shutil.rmtree(work / f"{data.name}-{backend}".replace("/", "_"), ignore_errors=True)
    return out


def write_markdown(result: dict[str, Any], path: Path) -> None:
    lines = ["# Index backends: files vs Milvus (Milvus Lite)", "",
             f"CPU: {result['cpu']}. Command: `{result['command']}`.", "",
             "nDCG@10 on the held-out queries; search latency is `retriever.search` (query embedding, first "
             "stages, fusion; no reranker) per query, p50 / p95 in ms.", ""]
    for ds in result["datasets"]:
        f, m = ds["backends"]["files"], ds["backends"]["milvus"]
        lines += [f"## {ds['dataset']} ({ds['queries']} queries, {ds['embedder']}, {f['chunks']} chunks)", "",
                  "| mode | nDCG@10 files | nDCG@10 milvus | Δ | search p50 files | search p50 milvus | ratio | "
                  "p95 files | p95 milvus |", "|---|---|---|---|---|---|---|---|---|"]
        for mode in f["modes"]:
            a, b = f["modes"][mode], m["modes"][mode]
            ratio = b["search_ms"]["p50"] / a["search_ms"]["p50"] if a["search_ms"]["p50"] else float("nan")
            lines.append(f"| {mode} | {a['nDCG@10']:.4f} | {b['nDCG@10']:.4f} | {b['nDCG@10'] - a['nDCG@10']:+.4f} | "
                         f"{a['search_ms']['p50']:.1f} | {b['search_ms']['p50']:.1f} | {ratio:.2f}x | "
                         f"{a['search_ms']['p95']:.1f} | {b['search_ms']['p95']:.1f} |")
        lines += ["", f"Ingest: files {f['ingest_seconds']} s (embedding {f['embed_seconds']} s), then milvus "
                  f"{m['ingest_seconds']} s with the same vectors (the corpus is embedded once per run). Each mode "
                  "is timed on both backends one after the other.", ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    import sys

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scifact", type=Path, help="BEIR SciFact directory (train split, held-out part)")
    ap.add_argument("--korquad", type=Path, help="KorQuAD 1.0 dev JSON (held-out part)")
    ap.add_argument("--korquad-limit", type=int, default=500)
    ap.add_argument("--out", type=Path, default=Path("eval/results/backends.json"))
    args = ap.parse_args(argv)
    shm = Path("/dev/shm")
    result: dict[str, Any] = {"cpu": cpu_info(), "command": "python -m eval.bench_backends " + " ".join(sys.argv[1:]),
                              "datasets": []}
    with tempfile.TemporaryDirectory(prefix="bench-backends-", dir=shm if shm.is_dir() else None) as tmp:
        if args.scifact:
            data = load_beir(args.scifact, "train").select("heldout")
            result["datasets"].append(bench_dataset(data, "minilm", Path(tmp)))
        if args.korquad:
            data = load_korquad(args.korquad).select("heldout", args.korquad_limit, 13)
            result["datasets"].append(bench_dataset(data, "e5-small", Path(tmp)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    write_markdown(result, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
