"""Embedder arithmetic: float32 against bfloat16 autocast (``RAG_EMBED_PRECISION``) for MiniLM.

    python -m eval.bench_embed_precision [--scifact ../shared/data/scifact] [--sample 512]

Two measurements in one run. Throughput: the same sample of SciFact chunk texts embedded in each
precision in turn, three rounds alternating, median chunks/s (a change in the machine's load hits
both alike). Quality: the SciFact corpus ingested once per precision (`ingest_dataset`, the real
path), then nDCG@10 of dense and hybrid retrieval on the held-out train queries, queries embedded
in the index's precision, and also across (a bf16 index searched with fp32 queries). Writes
eval/results/embed_precision.json and .md with the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eval.common import RESULTS, SHARED_DATA, cpu_info, write_json
from eval.retrieval import evaluate_mode, parse_modes
from ingest.pipeline import ingest_dataset
from rag.config import Settings
from rag.datasets import load_beir, read_jsonl
from rag.models.embedder import make_embedder
from rag.retrieval.factory import build_retriever

PRECISIONS = ("fp32", "bf16")


def throughput(texts: list[str], rounds: int = 3) -> dict[str, Any]:
    embedders = {p: make_embedder("minilm", 2, precision=p) for p in PRECISIONS}
    for e in embedders.values():
        e.load()
        e.embed_documents(texts[:64])  # kernels warmed for the shapes
    rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(rounds):
        for p, e in embedders.items():
            t = time.perf_counter()
            e.embed_documents(texts)
            rates[p].append(len(texts) / (time.perf_counter() - t))
    a, b = embedders["fp32"].embed_documents(texts), embedders["bf16"].embed_documents(texts)
    cos = (a * b).sum(1)
    return {"chunks": len(texts), "chunks_per_s": {p: [round(r, 2) for r in v] for p, v in rates.items()},
            "median": {p: round(statistics.median(v), 2) for p, v in rates.items()},
            "cosine_min": round(float(cos.min()), 6), "cosine_median": round(float(statistics.median(cos)), 6)}


def quality(scifact: Path, work: Path) -> dict[str, Any]:
    data = load_beir(scifact, "train").select("heldout")
    out: dict[str, Any] = {"queries": len(data.queries)}
    for p in PRECISIONS:
        settings = Settings(_env_file=None, embedder="minilm", reranker="none", embed_precision=p)
        t = time.perf_counter()
        report = ingest_dataset(data, work / p, settings, progress=False)
        row: dict[str, Any] = {"ingest_seconds": round(time.perf_counter() - t, 1), "chunks": report.chunks_total,
                               "embed_seconds": round(report.embed_seconds, 1),
                               "chunks_per_s": round(report.chunks_total / report.embed_seconds, 2)}
        for q in PRECISIONS:  # queries embedded in either precision
            qs = Settings(_env_file=None, embedder="minilm", reranker="none", embed_precision=q)
            retriever = build_retriever(qs, work / p, rerank=False)
            for spec in parse_modes("dense,hybrid"):
                r = evaluate_mode(retriever, data, spec, qs, progress=False)
                row[f"{spec.label} nDCG@10 (queries {q})"] = round(r["metrics"]["nDCG@10"], 4)
        out[p] = row
        print(p, row, flush=True)
    return out


def write_markdown(result: dict[str, Any], path: Path) -> None:
    t, q = result["throughput"], result["quality"]
    lines = ["# Embedder precision: float32 vs bfloat16 autocast (MiniLM)", "",
             f"CPU: {result['cpu']}. Command: `{result['command']}`.", "",
             f"## Throughput ({t['chunks']} SciFact chunk texts, 3 alternating rounds)", "",
             "| precision | chunks/s per round | median | ratio |", "|---|---|---:|---:|"]
    for p in PRECISIONS:
        lines.append(f"| {p} | {', '.join(map(str, t['chunks_per_s'][p]))} | {t['median'][p]} | "
                     f"{t['median'][p] / t['median']['fp32']:.2f}x |")
    lines += ["", f"Cosine of the same text's two vectors: min {t['cosine_min']}, median {t['cosine_median']}.", "",
              f"## SciFact ingest and retrieval ({q['queries']} held-out train queries)", ""]
    keys = [k for k in q["fp32"] if k not in ("ingest_seconds", "chunks", "embed_seconds")]
    lines += ["| index built in | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += [f"| {p} | " + " | ".join(str(q[p][k]) for k in keys) + " |" for p in PRECISIONS]
    lines += ["", "Ingest runs one after the other (fp32 first); their chunks/s is embedding only. The "
              "throughput table compares the two side by side."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scifact", type=Path, default=SHARED_DATA / "scifact")
    ap.add_argument("--sample", type=int, default=512)
    ap.add_argument("--out", type=Path, default=RESULTS / "embed_precision.json")
    args = ap.parse_args()
    texts = [r["title"] + "\n" + r["text"] for r, _ in zip(read_jsonl(args.scifact / "corpus.jsonl"),
                                                            range(args.sample))]
    result: dict[str, Any] = {"cpu": cpu_info(),
                              "command": "python -m eval.bench_embed_precision " + " ".join(sys.argv[1:])}
    result["throughput"] = throughput(texts)
    print(result["throughput"], flush=True)
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="bench-precision-", dir=shm if shm.is_dir() else None) as tmp:
        result["quality"] = quality(args.scifact, Path(tmp))
    write_json(args.out, result)
    write_markdown(result, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
