"""Peak memory (RSS) of loading a 100k-chunk index for queries, embedder included.

    python -m eval.bench_memory [--chunks 100000]

Builds (once, cached under indexes/bench-100k) an index of SciFact windows through the real
index writer, with real BM25 tokens and a 384-d FAISS flat index. Its vectors are random unit
vectors, not MiniLM embeddings: embedding 100k chunks on 2 cores takes most of an hour, and
the memory a loaded index needs depends on its size, not on its vector values. Then a fresh
subprocess loads the index and the MiniLM embedder, runs queries on both indexes, and reports
its peak RSS (ru_maxrss). Writes eval/results/bench_memory.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from eval.common import RESULTS, ROOT, write_json

INDEX = ROOT / "indexes" / "bench-100k"


def build(n: int) -> None:
    from eval.common import scifact_windows
    from ingest.pipeline import dense_settings, index_settings
    from rag.config import Settings
    from rag.index import IndexLock, NewDoc, current_version_dir, write_version
    from rag.models.embedder import make_embedder
    from rag.text import Tokenizer
    from rag.types import Chunk

    if current_version_dir(INDEX) is not None:
        return
    settings = Settings(_env_file=None)
    emb = make_embedder("minilm")
    tok = Tokenizer()
    texts = scifact_windows(n)
    chunks = [Chunk(chunk_id=f"w{i // 10}#{i % 10}", doc_id=f"w{i // 10}", text=t, start=0, end=len(t))
              for i, t in enumerate(texts)]
    docs = [NewDoc(f"w{d}", "", "synthetic", "text", str(d), 10, 0, "en", {}) for d in range(n // 10)]
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(n, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    with IndexLock(INDEX):
        write_version(INDEX, None, index_settings(settings, emb, tok), [], docs, chunks, vecs,
                      tok.tokenize_many(texts), dense_settings(settings))


def probe() -> None:
    """Run in a fresh process: load everything a query server loads, query, report."""
    from rag.index import Index
    from rag.models.embedder import make_embedder

    t = time.perf_counter()
    ix = Index.open(INDEX)
    t_load = time.perf_counter() - t
    emb = make_embedder("minilm")
    emb.load()
    for q in ("vitamin D deficiency", "aspirin heart attack risk", "gene expression in tumours"):
        ix.bm25.search(ix.tokenizer(q), 100)
        ix.dense.search(emb.embed_query(q), 100)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"chunks": ix.n_chunks, "load_seconds": round(t_load, 2), "peak_rss_mb": round(rss_mb),
                      "disk_mb": round(sum(ix.disk_bytes().values()) / 1e6, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        probe()
        return
    build(args.chunks)
    out = subprocess.run([sys.executable, "-m", "eval.bench_memory", "--probe"], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    write_json(RESULTS / "bench_memory.json", result)
    print(result)


if __name__ == "__main__":
    main()
