"""Retrieval latency on SciFact, medians on this machine: hybrid without rerank, and reranking.

    python -m eval.bench_retrieval [--index indexes/eval-scifact-minilm] [--queries 200]
        [--reranker models/reranker] [--also models/reranker-l3 ...]

Per query: BM25, query embedding, FAISS search, fusion, total; then, when a reranker exists,
the cross-encoder over the fused top 30 at max length 256 and 128, float32, bfloat16 autocast and
dynamic int8, interleaved per query (2 threads, PyTorch CPU). Speed does not depend on the weights: any
CrossEncoder directory of the same architecture gives the same timings. ``--also DIR`` adds another
(e.g. a distilled student with fewer layers) at both lengths in bfloat16 and int8, in the same interleaving.
Writes eval/results/bench_retrieval.json and .md.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from eval.common import RESULTS, SHARED_DATA, read_jsonl, write_json
from eval.retrieval import percentile
from rag.config import Settings
from rag.retrieval.factory import build_retriever


def summarise(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 2), "p95": round(percentile(values, 0.95), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--index", default="indexes/eval-scifact-minilm")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--reranker", default="models/reranker")
    ap.add_argument("--rerank-queries", type=int, default=50)
    ap.add_argument("--also", action="append", default=[], help="Another reranker directory to time alongside.")
    args = ap.parse_args()
    settings = Settings(_env_file=None)
    retriever = build_retriever(settings, args.index, rerank=False)
    index, emb = retriever.index, retriever.embedder
    queries = [q["text"] for q, _ in zip(read_jsonl(SHARED_DATA / "scifact" / "queries.jsonl"), range(args.queries))]
    for q in queries[:10]:  # warm-up
        retriever.search(q, rerank=False)
    stages: dict[str, list[float]] = {}
    for q in queries:
        res = retriever.search(q, rerank=False)
        for k, v in res.timings_ms.items():
            stages.setdefault(k, []).append(v)
    result = {"index": args.index, "chunks": index.n_chunks, "queries": len(queries), "threads": settings.embed_threads,
              "hybrid_no_rerank_ms": {k: summarise(v) for k, v in stages.items()}}
    lines = [f"| stage ({len(queries)} SciFact queries, {index.n_chunks:,} chunks) | p50 ms | p95 ms |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['p50']:.2f} | {v['p95']:.2f} |" for k, v in result["hybrid_no_rerank_ms"].items()]
    if Path(args.reranker).exists():
        variants = [(args.reranker, n, p) for n in (256, 128) for p in ("float32", "bfloat16", "int8")]
        variants += [(d, n, p) for d in args.also for n in (256, 128) for p in ("bfloat16", "int8")]
        retrievers = {v: build_retriever(settings.model_copy(update={
            "reranker": v[0], "rerank_max_length": v[1], "rerank_precision": v[2], "rerank_top": 30}),
            args.index, embedder=emb) for v in variants}
        times: dict = {v: [] for v in variants}
        for r in retrievers.values():  # warm-up
            r.search(queries[0], rerank=True)
        # Interleaved per query, so that other load on the machine hits every variant alike.
        for q in queries[: args.rerank_queries]:
            for v, r in retrievers.items():
                times[v].append(r.search(q, rerank=True).timings_ms["rerank"])
        for (model, max_len, precision), t in times.items():
            tag = "" if precision == "float32" else f"_{precision}"
            other = "" if model == args.reranker else f"_{Path(model).name}"
            key = f"rerank_top30_maxlen{max_len}{tag}{other}_ms"
            result[key] = summarise(t)
            who = "" if model == args.reranker else f"{model}, "
            lines.append(f"| rerank top 30, {who}max length {max_len}, {precision} ({len(t)} queries) | "
                         f"{result[key]['p50']:.1f} | {result[key]['p95']:.1f} |")
    write_json(RESULTS / "bench_retrieval.json", result)
    (RESULTS / "bench_retrieval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
