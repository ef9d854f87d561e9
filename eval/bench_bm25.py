"""BM25 query speed vs rank-bm25 at 100k chunks, side by side in one process, plus score parity.

    python -m eval.bench_bm25 [--chunks 100000] [--queries 20]

Writes eval/results/bench_bm25.json and .md. Needs ../shared/data (SciFact) for realistic text.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from rank_bm25 import BM25Okapi

from eval.common import RESULTS, SHARED_DATA, read_jsonl, scifact_windows, write_json
from rag.index.bm25 import BM25Index, TermMatrix
from rag.text import Tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=20)
    args = ap.parse_args()

    tok = Tokenizer()
    t = time.perf_counter()
    docs = tok.tokenize_many(scifact_windows(args.chunks))
    t_tok = time.perf_counter() - t
    queries = [tok(q["text"]) for q, _ in zip(read_jsonl(SHARED_DATA / "scifact" / "queries.jsonl"),
                                                range(args.queries))]
    k1, b, eps = 1.2, 0.75, 0.25

    t = time.perf_counter()
    ours = BM25Index(TermMatrix.empty().updated([], np.arange(len(docs)), docs), k1, b, eps)
    t_ours_build = time.perf_counter() - t
    t = time.perf_counter()
    ref = BM25Okapi(docs, k1=k1, b=b, epsilon=eps)
    t_ref_build = time.perf_counter() - t

    ours_ms, ref_ms, search_ms, max_rel = [], [], [], 0.0
    for q in queries:  # interleaved, so that machine noise hits both alike
        t = time.perf_counter()
        r = np.asarray(ref.get_scores(q))
        ref_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        a = ours.get_scores(q)
        ours_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        ours.search(q, 100)
        search_ms.append((time.perf_counter() - t) * 1000)
        nz = np.abs(r) > 1e-9
        max_rel = max(max_rel, float(np.max(np.abs(a[nz] - r[nz]) / np.abs(r[nz]))) if nz.any() else 0.0)

    med_ref, med_ours, med_search = (statistics.median(x) for x in (ref_ms, ours_ms, search_ms))
    result = {
        "chunks": len(docs), "queries": len(queries), "k1": k1, "b": b,
        "tokenize_seconds": round(t_tok, 2),
        "build_seconds": {"ours": round(t_ours_build, 2), "rank_bm25": round(t_ref_build, 2)},
        "median_ms": {"rank_bm25_get_scores": round(med_ref, 2), "ours_get_scores": round(med_ours, 3),
                      "ours_search_top100": round(med_search, 3)},
        "speedup_get_scores": round(med_ref / med_ours, 1),
        "speedup_search_top100": round(med_ref / med_search, 1),
        "max_relative_score_difference": max_rel,
    }
    write_json(RESULTS / "bench_bm25.json", result)
    md = (f"| {len(docs):,} chunks, {len(queries)} SciFact queries | median ms/query |\n|---|---:|\n"
          f"| rank-bm25 `BM25Okapi.get_scores` | {med_ref:.1f} |\n"
          f"| ours `get_scores` (all chunks) | {med_ours:.2f} |\n"
          f"| ours `search` (top 100) | {med_search:.2f} |\n"
          f"| speed-up (get_scores / search) | {result['speedup_get_scores']}× / {result['speedup_search_top100']}× |\n"
          f"| max relative score difference | {max_rel:.1e} |\n")
    (RESULTS / "bench_bm25.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
