"""Offline retrieval evaluation: document-level nDCG@10, Recall@10/100, MRR@10, MAP@100 per mode.

Chunk hits are max-pooled to their documents (BEIR scores documents). Metrics come from
ir-measures (trec_eval underneath). For each mode: the metrics, latency per stage (p50/p95),
and the candidate recall that a reranker would receive (Recall of the fused top ``rerank_top``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ir_measures
from ir_measures import AP, RR, R, nDCG
from tqdm.auto import tqdm

from rag.config import Settings
from rag.datasets import RetrievalSet
from rag.retrieval.retriever import HybridRetriever

MEASURES = [nDCG @ 10, R @ 1, R @ 5, R @ 10, R @ 20, R @ 100, RR @ 10, AP @ 100]
NAMES = {str(m): n for m, n in zip(MEASURES, ("nDCG@10", "Recall@1", "Recall@5", "Recall@10", "Recall@20",
                                              "Recall@100", "MRR@10", "MAP@100"))}
TABLE_METRICS = ("nDCG@10", "Recall@1", "Recall@5", "Recall@10", "Recall@100", "MRR@10", "MAP@100")


@dataclass(frozen=True)
class ModeSpec:
    """A named retrieval configuration: a mode plus settings overrides."""

    label: str
    mode: str
    rerank: bool = False
    overrides: tuple[tuple[str, Any], ...] = ()


def parse_modes(spec: str) -> list[ModeSpec]:
    """``bm25,dense,hybrid,hybrid-rrf,hybrid-convex,hybrid+rerank`` (``@alpha=0.3`` style overrides)."""
    out = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        label, _, extra = item.partition("@")
        overrides = []
        for kv in filter(None, extra.split(";")):
            key, _, value = kv.partition("=")
            overrides.append((key, value))
        base, rerank = label, False
        if base.endswith("+rerank"):
            base, rerank = base[: -len("+rerank")], True
        if base == "hybrid-rrf":
            base, overrides = "hybrid", overrides + [("fusion", "rrf")]
        elif base == "hybrid-convex":
            base, overrides = "hybrid", overrides + [("fusion", "convex")]
        if base not in ("bm25", "dense", "hybrid"):
            raise ValueError(f"unknown mode {label!r}")
        out.append(ModeSpec(item, base, rerank, tuple(overrides)))
    return out


def doc_run(hits: Sequence[Any]) -> dict[str, float]:
    """Max-pool chunk scores per document, keeping rank order (scores turned into descending ranks)."""
    run: dict[str, float] = {}
    n = len(hits)
    for rank, hit in enumerate(hits):
        run.setdefault(hit.chunk.doc_id, float(n - rank))  # first (best) chunk of a doc wins
    return run


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    idx = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[idx]


_RERANKERS: dict[tuple[str, int, str], Any] = {}


def _loaded_name(settings: Settings) -> str:
    """The name ``make_reranker`` gives the model it loads for ``settings.reranker``."""
    path = Path(settings.reranker).expanduser()
    return str(path) if path.exists() else settings.reranker


def reranker_for(current: Any, s: Settings, model: str | None = None) -> Any:
    """The reranker for a mode's settings: the loaded one, or (once per configuration) the same
    model at another max length or precision, so that ``@rerank_precision=int8`` really measures int8,
    or another local model (``@reranker=models/reranker-l3``) to compare two side by side."""
    from rag.models.reranker import CrossEncoderReranker

    name = model or current.name
    key = (name, s.rerank_max_length, s.rerank_precision)
    if (current.name, current.max_length, current.precision) == key:
        return current
    _RERANKERS.setdefault((current.name, current.max_length, current.precision), current)
    if key not in _RERANKERS:
        _RERANKERS[key] = CrossEncoderReranker(name, s.rerank_max_length, threads=current.threads,
                                               precision=s.rerank_precision)
    return _RERANKERS[key]


def evaluate_mode(retriever: HybridRetriever, data: RetrievalSet, spec: ModeSpec, settings: Settings,
                  progress: bool = True) -> dict[str, Any]:
    # Validated (not model_copy): "false" from the command line must become False.
    s = Settings.model_validate({**settings.model_dump(), **dict(spec.overrides)})
    retriever.settings = s
    if spec.rerank and retriever.reranker is not None:
        # The mode's own model (@reranker=DIR) or the one the eval loaded (settings.reranker).
        model = str(Path(s.reranker).expanduser()) if "reranker" in dict(spec.overrides) else _loaded_name(settings)
        retriever.reranker = reranker_for(retriever.reranker, s, model)
    run: dict[str, dict[str, float]] = {}
    cand_run: dict[str, dict[str, float]] = {}
    stage_ms: dict[str, list[float]] = {}
    dense_off = 0
    for qid, text in tqdm(data.queries.items(), desc=spec.label, unit="q", disable=not progress):
        k = s.candidates if not spec.rerank else max(s.rerank_top, 10)
        res = retriever.search(text, k=max(k, 10), mode=spec.mode, rerank=spec.rerank)
        run[qid] = doc_run(res.hits)
        cand = retriever.search(text, k=s.rerank_top, mode=spec.mode, rerank=False) if spec.rerank else res
        cand_run[qid] = doc_run(cand.hits[: s.rerank_top])
        dense_off += spec.mode == "hybrid" and not res.dense_used
        for stage, ms in res.timings_ms.items():
            stage_ms.setdefault(stage, []).append(ms)
    agg = ir_measures.calc_aggregate(MEASURES, data.qrels, run)
    per_query: dict[str, dict[str, float]] = {}
    for m in ir_measures.iter_calc(MEASURES, data.qrels, run):
        per_query.setdefault(m.query_id, {})[NAMES[str(m.measure)]] = m.value
    cand_recall = ir_measures.calc_aggregate([R @ 1000], data.qrels, cand_run)[R @ 1000]
    return {
        "mode": spec.label, "queries": len(data.queries),
        "settings": {"fusion": s.fusion, "fusion_alpha": s.fusion_alpha, "rrf_k": s.rrf_k,
                     "candidates": s.candidates, "rerank": spec.rerank, "rerank_top": s.rerank_top,
                     "rerank_weight": s.rerank_weight if spec.rerank else None,
                     "rerank_max_length": s.rerank_max_length if spec.rerank else None,
                     "rerank_precision": s.rerank_precision if spec.rerank else None,
                     "rerank_score_space": s.rerank_score_space if spec.rerank else None,
                     "language_gate": s.language_gate},
        "metrics": {NAMES[str(m)]: round(v, 4) for m, v in agg.items()},
        f"candidate_recall@{s.rerank_top}": round(cand_recall, 4),
        "dense_skipped_queries": int(dense_off),
        "latency_ms": {stage: {"p50": round(statistics.median(v), 2), "p95": round(percentile(v, 0.95), 2)}
                       for stage, v in stage_ms.items()},
        "per_query": per_query,
    }


def write_report(result: dict[str, Any], out: Path) -> None:
    """FILE.json, FILE.md (table) and FILE.png (bar chart of the modes)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    slim = dict(result)
    slim["modes"] = [{k: v for k, v in m.items() if k != "per_query"} for m in result["modes"]]
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    metric_names = list(TABLE_METRICS)
    lines = [f"# {result['dataset']} ({result['queries']} queries; index: {result['index']['embedder']}, "
             f"{result['index']['chunks']} chunks)", "",
             "| mode | " + " | ".join(metric_names) + " | cand. recall | p50 ms | p95 ms |",
             "|---|" + "---:|" * (len(metric_names) + 3)]
    for m in slim["modes"]:
        cr = next(v for k, v in m.items() if k.startswith("candidate_recall"))
        lat = m["latency_ms"].get("total", {"p50": 0, "p95": 0})
        lines.append(f"| {m['mode']} | " + " | ".join(f"{m['metrics'][n]:.3f}" for n in metric_names)
                     + f" | {cr:.3f} | {lat['p50']:.1f} | {lat['p95']:.1f} |")
    lines += ["", f"Reranker: {result.get('reranker', 'off')}. Command: `{result.get('command', '')}`", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(slim["modes"]), 4))
    labels = [m["mode"] for m in slim["modes"]]
    width = 0.8 / 3
    for i, name in enumerate(("nDCG@10", "Recall@10", "MRR@10")):
        vals = [m["metrics"][name] for m in slim["modes"]]
        xs = [x + (i - 1) * width for x in range(len(labels))]
        bars = ax.bar(xs, vals, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=15)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{result['dataset']}: retrieval by mode ({result['queries']} queries)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    plt.close(fig)


def run_eval(data: RetrievalSet, retriever: HybridRetriever, modes: Sequence[ModeSpec], settings: Settings,
             progress: bool = True) -> dict[str, Any]:
    t = time.perf_counter()
    results = [evaluate_mode(retriever, data, spec, settings, progress) for spec in modes]
    m = retriever.index.manifest
    return {"dataset": data.name, "queries": len(data.queries),
            "index": {"path": str(retriever.index.path), "embedder": m["embedder"]["name"],
                      "chunks": m["counts"]["chunks"], "documents": m["counts"]["documents"],
                      "tokenizer": m["tokenizer"], "bm25": m["bm25"]},
            "modes": results, "seconds": round(time.perf_counter() - t, 1)}
