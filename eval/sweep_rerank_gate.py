"""Price every threshold of a refusal signal from one answer-eval run made with it off.

    rag eval answers --dataset ../shared/data/squad2_dev/dev-v2.0.json --part dev --limit 80 \\
        --set gate_rerank=none --out eval/results/dev/answers_squad_dev.json
    python -m eval.sweep_rerank_gate eval/results/dev/answers_squad_dev.json
    # self-consistency: a run with --set consistency_samples=4 (agreement recorded, never refused on)
    python -m eval.sweep_rerank_gate FILE.json --signal agreement

Generation is greedy, so a question the signal lets through gets the same answer at any
threshold: re-scoring the recorded outcomes (``eval.answers.with_rerank_gate`` /
``with_min_agreement``) is exact. Writes FILE_sweep.md and FILE_sweep.png beside the input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from eval.answers import TARGETS, Record, summarize, with_min_agreement, with_rerank_gate

COLUMNS = ("unanswerable_refused", "false_refusal", "contains_gold", "citation_accuracy", "f1")


SIGNALS = {"rerank": (with_rerank_gate, "gate_rerank (best cross-encoder score must reach it)"),
           "agreement": (with_min_agreement, "consistency_min_agreement (sampled answers must agree this much)")}


def sweep(records: list[Record], thresholds: list[float], signal: str = "rerank") -> list[dict]:
    apply = SIGNALS[signal][0]
    return [{"threshold": t, **{k: summarize(apply(records, t), [])[k] for k in COLUMNS}} for t in thresholds]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="a rag eval answers JSON run with the signal off "
                    "(--set gate_rerank=none, or consistency_samples=N with consistency_min_agreement=0)")
    ap.add_argument("--signal", choices=sorted(SIGNALS), default="rerank")
    ap.add_argument("--thresholds", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
                    help="comma list of thresholds (cross-encoder sigmoid scores or agreements, 0..1)")
    args = ap.parse_args()
    data = json.loads(args.report.read_text(encoding="utf-8"))
    fields = set(Record.__dataclass_fields__)
    records = [Record(**{k: v for k, v in r.items() if k in fields}) for r in data["records"]]
    if args.signal == "rerank" and not any((r.gate or {}).get("rerank_max") is not None for r in records):
        raise SystemExit("the run has no cross-encoder scores: run it with a reranker")
    if args.signal == "agreement" and not any(r.agreement is not None for r in records):
        raise SystemExit("the run has no agreements: run it with --set consistency_samples=N")
    rows = sweep(records, [float(x) for x in args.thresholds.split(",")], args.signal)
    base = {k: summarize(records, [])[k] for k in COLUMNS}
    pct = lambda v: "–" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    name = SIGNALS[args.signal][1].split()[0]
    lines = [f"# {name} sweep: {args.report.name} ({data.get('model')}, {len(records)} questions)", "",
             f"| {name} | " + " | ".join(COLUMNS) + " |", "|---:|" + "---:|" * len(COLUMNS),
             "| off | " + " | ".join(pct(base[k]) for k in COLUMNS) + " |"]
    lines += ["| " + f"{r['threshold']:g} | " + " | ".join(pct(r[k]) for k in COLUMNS) + " |" for r in rows]
    flag = "" if args.signal == "rerank" else f" --signal {args.signal}"
    lines += ["", f"Command: `python -m eval.sweep_rerank_gate {args.report}{flag}`", ""]
    stem = args.report.with_name(args.report.stem + ("_sweep" if args.signal == "rerank" else f"_{args.signal}_sweep"))
    stem.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = [r["threshold"] for r in rows]
    for k in COLUMNS[:4]:
        ax.plot(x, [np.nan if r[k] is None else r[k] for r in rows], marker="o", label=k)
        if k in TARGETS:
            ax.axhline(TARGETS[k][1], ls=":", lw=0.8, color=ax.lines[-1].get_color())
    ax.set_xlabel(SIGNALS[args.signal][1])
    ax.set_ylabel("rate")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(f"Answer quality vs {name}")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
