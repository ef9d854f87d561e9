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

from eval.common import cpu_info, write_json
from eval.retrieval import evaluate_mode, parse_modes
from ingest.pipeline import ingest_dataset
from rag.config import Settings
from rag.datasets import RetrievalSet, load_beir, load_korquad
from rag.models.embedder import make_embedder
from rag.retrieval.factory import build_retriever

BACKENDS = ("files", "milvus")
MODES = "bm25,dense,hybrid"


def bench_dataset(data: RetrievalSet, embedder_name: str, work: Path) -> dict[str, Any]:
    embedder = make_embedder(embedder_name, 2)
    embedder.load()
    out: dict[str, Any] = {"dataset": data.name, "queries": len(data.queries), "embedder": embedder_name,
                           "backends": {}}
    for backend in BACKENDS:
        settings = Settings(_env_file=None, embedder=embedder_name, backend=backend, reranker="none")
        index_dir = work / f"{data.name}-{backend}".replace("/", "_")
        t = time.perf_counter()
        report = ingest_dataset(data, index_dir, settings, progress=False)
        ingest_s = time.perf_counter() - t
        retriever = build_retriever(settings, index_dir, rerank=False, embedder=embedder)
        modes = {}
        for spec in parse_modes(MODES):
            r = evaluate_mode(retriever, data, spec, settings, progress=False)
            lat = r["latency_ms"]
            modes[spec.label] = {"nDCG@10": r["metrics"]["nDCG@10"], "search_ms": lat["total"],
                                 "first_stage_ms": {k: v for k, v in lat.items() if k in ("bm25", "dense", "embed")}}
        out["backends"][backend] = {"ingest_seconds": round(ingest_s, 1), "chunks": report.chunks_total,
                                    "embed_seconds": round(report.embed_seconds, 1), "modes": modes}
        print(f"{data.name} {backend}: ingest {ingest_s:.1f} s, " + ", ".join(
            f"{m} nDCG@10 {v['nDCG@10']:.4f} p50 {v['search_ms']['p50']:.1f} ms" for m, v in modes.items()),
            flush=True)
        shutil.rmtree(index_dir, ignore_errors=True)
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
        lines += ["", f"Ingest: files {f['ingest_seconds']} s (embedding {f['embed_seconds']} s), milvus "
                  f"{m['ingest_seconds']} s (embedding {m['embed_seconds']} s).", ""]
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
