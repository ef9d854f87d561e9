"""Calibrate the reranker's part of the answer gate (``RAG_GATE_RERANK``) on data.

With a reranker active, a question passes the gate when the first-stage rule passes (dense
cosine or BM25 ratio, ``eval.calibrate_gate``) *and* the best cross-encoder score reaches
``gate_rerank``. The project's reranker is trained to score passages that do not answer a question
below 0 (``rag.training``: the zero anchor, SQuAD 2.0 unanswerable questions of the train part),
so the threshold should sit near 0; this script picks it on the **dev** part (the train part's
questions were trained on) and reports the heldout part beside it, never using it to choose.

Rule: the threshold that refuses the most SQuAD dev unanswerable questions while passing at
least ``--min-pass`` (default 92 %) of SQuAD dev answerable questions and of SciFact dev claims.
Writes ``eval/results/gate_rerank_calibration.{json,md,png}``.

    python -m eval.calibrate_rerank_gate --reranker models/reranker   # ~15 min here
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from eval.common import RESULTS, ROOT, SHARED_DATA, read_jsonl, write_json


def signals(pipeline, questions: list[str], desc: str) -> np.ndarray:
    """(n, 2): first-stage gate passed (0/1), best cross-encoder score (NaN when not reranked)."""
    rows = []
    pipeline.settings = pipeline.settings.model_copy(update={"gate_rerank": None})  # first stage only
    for q in tqdm(questions, desc=desc, unit="q"):
        _, gate = pipeline.search_and_gate(q, pipeline.settings.context_passages)
        r = gate.signals.get("rerank_max")
        rows.append([float(gate.passed), np.nan if r is None else r])
    return np.asarray(rows, dtype=float).reshape(-1, 2)


def pass_rate(sig: np.ndarray, threshold: float | None) -> float:
    if not len(sig):
        return float("nan")
    ok = sig[:, 0] > 0
    if threshold is not None:
        ok &= np.nan_to_num(sig[:, 1], nan=np.inf) >= threshold
    return float(ok.mean())


def choose(answerable: list[np.ndarray], unanswerable: np.ndarray, min_pass: float) -> float:
    """The threshold refusing the most unanswerable questions with every answerable set's pass
    rate >= ``min_pass``; among equals the lowest (fewest false refusals)."""
    scores = np.concatenate([s[:, 1] for s in [*answerable, unanswerable]])
    grid = np.unique(np.round(scores[np.isfinite(scores)], 2))
    best = None
    for t in grid:
        if min(pass_rate(s, t) for s in answerable) < min_pass:
            continue
        key = (round(1 - pass_rate(unanswerable, t), 4), -t)
        if best is None or key > best[0]:
            best = (key, float(t))
    if best is None:
        raise SystemExit("no threshold keeps the answerable pass rate")
    return best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reranker", default="models/reranker")
    ap.add_argument("--min-pass", type=float, default=0.92)
    ap.add_argument("--limit", type=int, default=400, help="questions per population")
    ap.add_argument("--out", type=Path, default=RESULTS / "gate_rerank_calibration.json")
    args = ap.parse_args()

    from eval.answers import load_qa, select
    from eval.calibrate_gate import _pipeline
    from eval.cli import build_index
    from eval.datasets import load_beir
    from ingest.pipeline import ingest
    from rag.config import get_settings

    settings = get_settings().model_copy(update={"embedder": "minilm", "reranker": args.reranker})
    ooc = [r["text"] for r in read_jsonl(ROOT / "eval" / "data" / "out_of_corpus.jsonl")]
    sig: dict[str, np.ndarray] = {}
    sci = load_beir(SHARED_DATA / "scifact", "train")
    index = Path("indexes/eval-scifact-minilm")
    build_index(sci, index, settings)
    pipe = _pipeline(settings, index, rerank=True)
    sig["scifact_dev"] = signals(pipe, list(sci.select("dev").queries.values())[: args.limit], "SciFact dev")
    sig["scifact_heldout"] = signals(pipe, list(sci.select("heldout").queries.values())[: args.limit],
                                     "SciFact heldout")
    sig["scifact_ooc"] = signals(pipe, ooc, "SciFact out-of-corpus")
    name, docs, items = load_qa(SHARED_DATA / "squad2_dev" / "dev-v2.0.json")
    index = Path(f"indexes/answers-{name}-minilm")
    ingest([], index, settings, documents=docs)
    pipe = _pipeline(settings, index, rerank=True)
    for part in ("dev", "heldout"):
        qs = select(items, part)
        sig[f"squad_{part}_answerable"] = signals(pipe, [q.question for q in qs if not q.impossible][: args.limit],
                                                  f"SQuAD {part} answerable")
        sig[f"squad_{part}_unanswerable"] = signals(pipe, [q.question for q in qs if q.impossible][: args.limit],
                                                    f"SQuAD {part} unanswerable")
    sig["squad_ooc"] = signals(pipe, ooc, "SQuAD out-of-corpus")

    t = choose([sig["scifact_dev"], sig["squad_dev_answerable"]], sig["squad_dev_unanswerable"], args.min_pass)
    table = {k: {"n": int(len(v)), "passed_first_stage": round(pass_rate(v, None), 4),
                 "passed_with_rerank": round(pass_rate(v, t), 4),
                 "rerank_median": round(float(np.nanmedian(v[:, 1])), 3)} for k, v in sig.items()}
    write_json(args.out, {"reranker": args.reranker, "chosen": {"gate_rerank": t}, "min_pass": args.min_pass,
                          "populations": table, "signals": {k: v.round(4).tolist() for k, v in sig.items()}})
    lines = ["# Reranker gate calibration (MiniLM indexes, reranker on)", "",
             f"Chosen: cross-encoder top score ≥ **{t:.2f}** on top of the first-stage rule. Rule: most SQuAD dev "
             f"unanswerable questions refused while ≥ {100 * args.min_pass:.0f} % of SQuAD dev answerable questions "
             "and SciFact dev claims pass; heldout rows are reported, never used to choose.", "",
             "| population | n | passed (first stage) | passed (+ reranker) | median CE score |",
             "|---|---:|---:|---:|---:|"]
    for k, v in table.items():
        lines.append(f"| {k} | {v['n']} | {100 * v['passed_first_stage']:.1f} % | "
                     f"{100 * v['passed_with_rerank']:.1f} % | {v['rerank_median']:.2f} |")
    lines += ["", f"Command: `python -m eval.calibrate_rerank_gate --reranker {args.reranker}`", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(np.nanmin(np.concatenate([v[:, 1] for v in sig.values()])),
                       np.nanmax(np.concatenate([v[:, 1] for v in sig.values()])), 40)
    for k in ("scifact_dev", "squad_dev_answerable", "squad_dev_unanswerable", "squad_ooc"):
        ax.hist(sig[k][:, 1][np.isfinite(sig[k][:, 1])], bins=bins, alpha=0.45, density=True, label=k)
    ax.axvline(t, color="black", ls="--", lw=1, label=f"gate_rerank = {t:.2f}")
    ax.set_xlabel("best cross-encoder score (raw logit)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title("Reranker gate: answerable vs unanswerable (dev)")
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
