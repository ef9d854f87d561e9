"""Calibrate the retrieval gate (refuse without calling the LLM) on data.

Signals per question (reranker off, as the default service runs): the best dense cosine and the
BM25 top score over its per-query ceiling. A question passes the gate when either signal reaches
its threshold. Populations:

* SciFact: in-corpus claims (train queries of the calibration parts, never heldout) vs 50
  hand-written out-of-corpus questions (``eval/data/out_of_corpus.jsonl``: football, cooking, …);
* SQuAD 2.0: answerable vs unanswerable questions of the calibration parts over the 17-article
  corpus. Unanswerable SQuAD questions are on topic by design (they name the article's entities),
  so the gate is not expected to refuse them: the LLM must.

* e5-small (the multilingual embedder): SQuAD as above, and KorQuAD questions vs 30 hand-written
  Korean out-of-corpus questions (``eval/data/out_of_corpus_ko.jsonl``).

* ``--lang ko``: only the BM25-ratio threshold for Korean questions (``gate_bm25_lang``): KorQuAD
  questions vs the Korean out-of-corpus ones over a KorQuAD index, the dense threshold kept. On
  a MiniLM index the dense list is dropped for Korean queries (language gate), so BM25 is their
  only signal; its ratio scale follows the Kiwi tokenizer, not the English one.

Rule: the thresholds that refuse at least ``--ooc-refused`` (default 98 %) of the out-of-corpus
questions while passing the most in-corpus ones. Writes
``eval/results/gate_calibration_EMBEDDER[_LANG].{json,md,png}``.

    python -m eval.calibrate_gate --embedder minilm     # ~10 min here (SciFact ingest included)
    python -m eval.calibrate_gate --embedder e5-small --bm25 0.39  # ~15 min (e5 indexes)
    python -m eval.calibrate_gate --embedder minilm --lang ko     # ~3 min
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from eval.common import RESULTS, ROOT, SHARED_DATA, read_jsonl, write_json


def signals(pipeline, questions: list[str], desc: str) -> np.ndarray:
    """(n, 2) array: best dense cosine, BM25 ratio (NaN when missing)."""
    rows = []
    for q in tqdm(questions, desc=desc, unit="q"):
        _, gate = pipeline.search_and_gate(q, pipeline.settings.context_passages)
        s = gate.signals
        rows.append([np.nan if s.get("dense_max") is None else s["dense_max"],
                     np.nan if s.get("bm25_ratio") is None else s["bm25_ratio"]])
    return np.asarray(rows, dtype=float)


def pass_rate(sig: np.ndarray, dense_min: float, bm25_min: float) -> float:
    ok = (np.nan_to_num(sig[:, 0], nan=-1) >= dense_min) | (np.nan_to_num(sig[:, 1], nan=-1) >= bm25_min)
    return float(ok.mean()) if len(sig) else float("nan")


def choose(pos: list[np.ndarray], ooc: np.ndarray, ooc_refused: float, bm25: float | None = None,
           dense: float | None = None) -> tuple[float, float]:
    """Thresholds maximising the mean pass rate of the in-corpus sets with OOC refusal >= target.
    Among equals, the larger thresholds (more margin against unseen out-of-corpus questions).
    ``bm25`` fixes the BM25 threshold (it is one setting shared by all embedders); ``dense`` fixes
    the dense one (when calibrating a per-language BM25 threshold)."""
    best = None
    dense_grid = np.round(np.arange(0.0, 1.0, 0.01), 2) if dense is None else np.array([dense])
    bm25_grid = np.append(np.round(np.arange(0.0, 1.0, 0.01), 2), 1.01)  # 1.01 = BM25 signal off
    if bm25 is not None:
        bm25_grid = np.array([bm25])
    for d, b in itertools.product(dense_grid, bm25_grid):
        if 1 - pass_rate(ooc, d, b) < ooc_refused:
            continue
        score = float(np.mean([pass_rate(p, d, b) for p in pos]))
        key = (round(score, 4), d + min(b, 1.0))
        if best is None or key > best[0]:
            best = (key, d, b)
    if best is None:
        raise SystemExit("no thresholds reach the out-of-corpus target")
    return float(best[1]), float(best[2])


def _pipeline(settings, index_dir: Path, rerank: bool = False):
    from rag.answering.pipeline import AnswerPipeline
    from rag.retrieval.factory import build_retriever

    retriever = build_retriever(settings, index_dir, rerank=rerank)
    return AnswerPipeline(retriever, None, settings)  # the gate never calls the generator


def korean_populations(embedder: str, settings, limit: int
                       ) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """KorQuAD questions (calibration parts; heldout reported only) vs Korean out-of-corpus ones."""
    from eval.answers import load_qa, select
    from ingest.pipeline import ingest

    name, docs, items = load_qa(SHARED_DATA / "korquad1_dev" / "KorQuAD_v1.0_dev.json")
    index = Path(f"indexes/answers-{name}-{embedder}")
    ingest([], index, settings, documents=docs)
    pipe = _pipeline(settings, index)
    cal = [q.question for p in ("train", "dev") for q in select(items, p)]
    ooc = [r["text"] for r in read_jsonl(ROOT / "eval" / "data" / "out_of_corpus_ko.jsonl")]
    sig = {"korquad_answerable": signals(pipe, cal[:limit], "KorQuAD answerable"),
           "korquad_heldout_answerable": signals(pipe, [q.question for q in select(items, "heldout")][:limit],
                                                 "KorQuAD heldout answerable"),
           "korquad_ooc": signals(pipe, ooc, "Korean out-of-corpus")}
    return sig, ["korquad_answerable"], ["korquad_ooc"]


def populations(embedder: str, settings, limit: int) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """Signals per population; (signals, in-corpus names, out-of-corpus names).

    MiniLM (English): SciFact and SQuAD. e5-small (multilingual): SQuAD and KorQuAD, with Korean
    out-of-corpus questions for KorQuAD. In-corpus questions come from the calibration parts
    (train + dev) only; heldout ones are reported, never used to choose."""
    from eval.answers import load_qa, select
    from ingest.pipeline import ingest, ingest_dataset
    from rag.datasets import load_beir

    ooc_en = [r["text"] for r in read_jsonl(ROOT / "eval" / "data" / "out_of_corpus.jsonl")]
    ooc_ko = [r["text"] for r in read_jsonl(ROOT / "eval" / "data" / "out_of_corpus_ko.jsonl")]
    sig: dict[str, np.ndarray] = {}
    inside, outside = [], []
    if embedder == "minilm":
        sci = load_beir(SHARED_DATA / "scifact", "train")
        index = Path(f"indexes/eval-scifact-{embedder}")
        ingest_dataset(sci, index, settings)
        pipe = _pipeline(settings, index)
        cal = list(sci.select("train").queries.values()) + list(sci.select("dev").queries.values())
        sig["scifact_in"] = signals(pipe, cal[:limit], "SciFact in-corpus")
        sig["scifact_heldout"] = signals(pipe, list(sci.select("heldout").queries.values())[:limit], "SciFact heldout")
        sig["scifact_ooc"] = signals(pipe, ooc_en, "SciFact out-of-corpus")
        inside.append("scifact_in")
        outside.append("scifact_ooc")
    qa_sets = [("squad", SHARED_DATA / "squad2_dev" / "dev-v2.0.json", ooc_en)]
    if embedder != "minilm":
        qa_sets.append(("korquad", SHARED_DATA / "korquad1_dev" / "KorQuAD_v1.0_dev.json", ooc_ko))
    for short, path, ooc in qa_sets:
        name, docs, items = load_qa(path)
        index = Path(f"indexes/answers-{name}-{embedder}")
        ingest([], index, settings, documents=docs)
        pipe = _pipeline(settings, index)
        cal = [q for p in ("train", "dev") for q in select(items, p)]
        held = select(items, "heldout")
        sig[f"{short}_answerable"] = signals(pipe, [q.question for q in cal if not q.impossible][:limit],
                                            f"{short} answerable")
        unans = [q.question for q in cal if q.impossible][:limit]
        if unans:
            sig[f"{short}_unanswerable"] = signals(pipe, unans, f"{short} unanswerable")
        sig[f"{short}_heldout_answerable"] = signals(pipe, [q.question for q in held if not q.impossible][:limit],
                                                    f"{short} heldout answerable")
        sig[f"{short}_ooc"] = signals(pipe, ooc, f"{short} out-of-corpus")
        inside.append(f"{short}_answerable")
        outside.append(f"{short}_ooc")
    return sig, inside, outside


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedder", default="minilm", choices=["minilm", "e5-small"])
    ap.add_argument("--ooc-refused", type=float, default=0.98)
    ap.add_argument("--limit", type=int, default=600, help="questions per in-corpus population")
    ap.add_argument("--bm25", type=float, default=None,
                    help="fix the BM25 ratio threshold (shared by all embedders) and choose only the dense one")
    ap.add_argument("--lang", default=None, choices=["ko"],
                    help="calibrate only the BM25 threshold for questions in this language (gate_bm25_lang)")
    ap.add_argument("--out", type=Path, default=None, help="default eval/results/gate_calibration_EMBEDDER.json")
    args = ap.parse_args()
    suffix = f"_{args.lang}" if args.lang else ""
    out = args.out or RESULTS / f"gate_calibration_{args.embedder}{suffix}.json"

    from rag.config import get_settings

    settings = get_settings().model_copy(update={"embedder": args.embedder})
    old = (settings.gate_dense[args.embedder],
           settings.gate_bm25_lang.get(f"{args.embedder}/{args.lang}", settings.gate_bm25))
    if args.lang:
        sig, inside, outside = korean_populations(args.embedder, settings, args.limit)
    else:
        sig, inside, outside = populations(args.embedder, settings, args.limit)
    d, b = choose([sig[k] for k in inside], np.vstack([sig[k] for k in outside]), args.ooc_refused,
                  args.bm25, dense=old[0] if args.lang else None)
    table = {k: {"n": int(len(v)), "passed_chosen": round(pass_rate(v, d, b), 4),
                 "passed_previous": round(pass_rate(v, *old), 4),
                 "passed_dense_only": round(pass_rate(v, d, 1.01), 4),
                 "dense_median": round(float(np.nanmedian(v[:, 0])), 4),
                 "bm25_ratio_median": round(float(np.nanmedian(v[:, 1])), 4)} for k, v in sig.items()}
    result = {"embedder": args.embedder, "lang": args.lang, "chosen": {"gate_dense": d, "gate_bm25": b},
              "previous": {"gate_dense": old[0], "gate_bm25": old[1]}, "ooc_refused_target": args.ooc_refused,
              "in_corpus": inside, "out_of_corpus": outside, "populations": table,
              "signals": {k: v.round(4).tolist() for k, v in sig.items()}}
    write_json(out, result)
    scope = f", {args.lang} questions: BM25 threshold only" if args.lang else ""
    lines = [f"# Retrieval gate calibration ({args.embedder} index, reranker off{scope})", "",
             f"Chosen: dense cosine ≥ **{d:.2f}** or BM25 ratio ≥ **{b:.2f}** (1.01 = BM25 signal off; previous "
             f"{old[0]} / {old[1]}). Rule: at least {100 * args.ooc_refused:.0f} % of the out-of-corpus questions "
             f"({', '.join(outside)}) refused, most in-corpus ones ({', '.join(inside)}) passed.", "",
             "| population | n | passed (chosen) | passed (previous) | passed (dense only) | median cosine | "
             "median BM25 ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
    for k, v in table.items():
        lines.append(f"| {k} | {v['n']} | {100 * v['passed_chosen']:.1f} % | {100 * v['passed_previous']:.1f} % | "
                     f"{100 * v['passed_dense_only']:.1f} % | {v['dense_median']:.3f} | {v['bm25_ratio_median']:.3f} |")
    fixed = (f" --bm25 {args.bm25:g}" if args.bm25 is not None else "") + (f" --lang {args.lang}" if args.lang else "")
    lines += ["", f"Command: `python -m eval.calibrate_gate --embedder {args.embedder}{fixed}`", ""]
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({k.split("_")[0] for k in sig})
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.5), squeeze=False)
    for ax, g in zip(axes[0], groups):
        for k in (k for k in sig if k.startswith(g + "_") and "heldout" not in k):
            v = sig[k]
            ax.scatter(v[:, 0], v[:, 1], s=8, alpha=0.5, label=f"{k} (n={len(v)})")
        ax.axvline(d, color="black", ls="--", lw=1)
        if b <= 1:
            ax.axhline(b, color="black", ls=":", lw=1)
        ax.set_xlabel(f"best dense cosine ({args.embedder})")
        ax.set_ylabel("BM25 top score / ceiling")
        ax.set_title(f"{g} corpus")
        ax.legend(fontsize=7)
    fig.suptitle(f"Retrieval gate ({args.embedder}): pass when cosine ≥ {d:.2f} or BM25 ratio ≥ {b:.2f}")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print("\n".join(lines))
    print(json.dumps(result["chosen"]))


if __name__ == "__main__":
    main()
