"""SciFact ingest: full build, then an unchanged re-ingest, each in a fresh `rag ingest` process.

    python -m eval.bench_ingest [--index /tmp/bench-scifact] [--embedder minilm]

Reports wall seconds, chunks, chunks/s, peak RSS of each run (ru_maxrss of the child) and the
index size on disk. Writes eval/results/bench_ingest.json and .md. Takes ~6 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from eval.common import RESULTS, ROOT, SHARED_DATA, write_json


def run(corpus: Path, index: Path, embedder: str) -> dict:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(corpus), "--index", str(index), "--json"],
                          capture_output=True, text=True, cwd=ROOT, check=True,
                          env={**__import__("os").environ, "RAG_EMBEDDER": embedder})
    wall = time.perf_counter() - t
    report = json.loads(proc.stdout)
    # ru_maxrss of children is the maximum over all children waited for so far: runs are ordered
    # full build first, so the second figure is only meaningful when it is lower.
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall_seconds": round(wall, 1), "ingest_seconds": report["seconds"],
            "embed_seconds": report["embed_seconds"], "chunks_added": report["chunks"]["added"],
            "chunks_total": report["chunks"]["total"], "chunks_per_second": report["chunks_per_second"],
            "documents": report["documents"], "peak_rss_mb_so_far": round(rss)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--index", default="/tmp/bench-scifact")
    ap.add_argument("--embedder", default="minilm")
    args = ap.parse_args()
    index = Path(args.index)
    shutil.rmtree(index, ignore_errors=True)
    corpus = SHARED_DATA / "scifact" / "corpus.jsonl"
    first = run(corpus, index, args.embedder)
    second = run(corpus, index, args.embedder)
    disk = sum(p.stat().st_size for p in index.glob("v*/*"))
    result = {"corpus": "BEIR SciFact (5,183 docs)", "embedder": args.embedder, "full": first,
              "unchanged": second, "unchanged_over_full": round(second["wall_seconds"] / first["wall_seconds"], 4),
              "index_disk_mb": round(disk / 1e6, 1)}
    write_json(RESULTS / "bench_ingest.json", result)
    md = (f"| SciFact ingest ({args.embedder}) | full | unchanged re-ingest |\n|---|---:|---:|\n"
          f"| wall seconds (process) | {first['wall_seconds']} | {second['wall_seconds']} |\n"
          f"| chunks embedded | {first['chunks_added']:,} | {second['chunks_added']} |\n"
          f"| chunks/s (embedding) | {first['chunks_per_second']} | - |\n"
          f"| index on disk | {result['index_disk_mb']} MB | |\n"
          f"| peak RSS | {first['peak_rss_mb_so_far']} MB | |\n")
    (RESULTS / "bench_ingest.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
