"""Helpers shared by the eval and benchmark scripts."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rag.datasets import read_jsonl

__all__ = ["RESULTS", "ROOT", "SHARED_DATA", "read_jsonl", "scifact_windows", "write_json"]

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "eval" / "results"


def scifact_windows(n_chunks: int, window: int = 64) -> list[str]:
    """``n_chunks`` passages of ``window`` words cut from SciFact abstracts (overlapping windows).

    A realistic vocabulary and length distribution at any scale, for speed and memory benchmarks.
    """
    words: list[str] = []
    for row in read_jsonl(SHARED_DATA / "scifact" / "corpus.jsonl"):
        words.extend((row["title"] + " " + row["text"]).split())
    stride = max(1, (len(words) - window) // n_chunks)
    return [" ".join(words[i * stride: i * stride + window]) for i in range(n_chunks)]


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def cpu_info() -> str:
    """The CPU model, its core count and the vector extensions the benchmarks care about."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model}, {os.cpu_count()} cores, {' '.join(wanted) or 'no AVX2'}"
