"""Do generated questions rank retrieval configurations as real labels do?

For each labelled data set: ingest its corpus, measure nDCG@10 of every configuration (bm25, dense,
hybrid RRF, hybrid convex, hybrid + reranker) on the real queries, generate a set from the corpus
alone with ``eval.synth`` (the same code as ``rag eval generate``), measure the configurations on
it, and compare the two orders with Kendall's tau. KorQuAD's generated items live in a temporary
directory that is deleted afterwards (its licence forbids storing derived files); the report keeps
aggregate figures only.

    python -m eval.validate_synth --sets scifact,squad,korquad --n 60 --model qwen2.5-1.5b
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from eval.common import cpu_info, write_json
from eval.retrieval import parse_modes, run_eval
from eval.synth import SynthConfig, finalize, plan, run
from rag.config import get_settings, with_options
from rag.datasets import RetrievalSet, load_beir, load_korquad, part_of, split_key

MODES = "bm25,dense,hybrid-rrf,hybrid-convex,hybrid+rerank"
SHARED = Path("../shared/data")


def real_set(name: str, limit: int) -> tuple[RetrievalSet, str]:
    """(heldout real queries over the full corpus, embedder) of a named data set."""
    if name == "scifact":
        return load_beir(SHARED / "scifact", "train").select("heldout"), "minilm"
    if name == "squad":
        return load_beir(SHARED / "squad2_dev" / "beir", "test").select("heldout", limit), "minilm"
    if name == "korquad":
        return load_korquad(SHARED / "korquad1_dev" / "KorQuAD_v1.0_dev.json").select("heldout", limit), "e5-small"
    raise ValueError(f"unknown set {name!r}")


def heldout_doc(name: str):
    """SQuAD-style sets sample questions from heldout articles only; SciFact from its whole corpus."""
    if name == "scifact":
        return None
    return lambda doc_id: part_of(split_key(name, "", {doc_id: 1})) == "heldout"


def synth_set(items: list[dict[str, Any]], name: str) -> RetrievalSet:
    kept = [i for i in items if i["dropped"] is None and i["kind"] == "answerable"]
    return RetrievalSet(f"{name}-generated", {i["key"]: i["question"] for i in kept},
                        {i["key"]: {i["doc_id"]: 1} for i in kept})


def kendall(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import kendalltau

    tau = kendalltau(a, b).statistic
    return None if tau != tau else round(float(tau), 4)


def validate(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from ingest.pipeline import ingest_dataset
    from rag.models.generator import make_generator
    from rag.retrieval.factory import build_retriever

    data, embedder = real_set(name, args.limit)
    settings = with_options(get_settings(), embedder=embedder, llm_model=args.model)
    index_dir = Path("indexes") / f"synth-{name}-{embedder}"
    ingest_dataset(load_full(name), index_dir, settings)
    retriever = build_retriever(settings, index_dir, rerank=True)
    specs = parse_modes(MODES)
    real = run_eval(data, retriever, specs, settings)
    config = SynthConfig(n=args.n, seed=args.seed, temperature=args.temperature, top_p=args.top_p)
    keep = name != "korquad"
    work = Path(args.work) / name if keep else Path(tempfile.mkdtemp(prefix="synth-"))
    try:
        generator = make_generator(settings)
        generator.load()
        tasks = plan(retriever.index, config, heldout_doc(name))
        items = list(run(tasks, generator, generator, config, work))
        summary = finalize(items, retriever.index, work, config, {"model": generator.name})
        synth = run_eval(synth_set(items, name), retriever, specs, settings)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    real_ndcg = [m["metrics"]["nDCG@10"] for m in real["modes"]]
    synth_ndcg = [m["metrics"]["nDCG@10"] for m in synth["modes"]]
    return {"set": name, "embedder": embedder, "real_queries": real["queries"], "generated_queries": synth["queries"],
            "modes": [m["mode"] for m in real["modes"]], "real_ndcg10": real_ndcg, "generated_ndcg10": synth_ndcg,
            "kendall_tau": kendall(real_ndcg, synth_ndcg),
            "generation": {k: summary[k] for k in ("items", "kept", "kept_answerable", "kept_unanswerable",
                                                   "generated_answerable", "judged_answerable", "dropped",
                                                   "distinct_words", "seconds_per_item")}}


def load_full(name: str) -> RetrievalSet:
    """The whole corpus of a set (the questions above are only its heldout part)."""
    if name == "korquad":
        return load_korquad(SHARED / "korquad1_dev" / "KorQuAD_v1.0_dev.json")
    return load_beir(SHARED / ("scifact" if name == "scifact" else "squad2_dev/beir"),
                     "train" if name == "scifact" else "test")


def write_report(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_json(out.with_suffix(".json"), result)
    lines = [f"# Generated test sets against real labels ({result['model']})", "",
             "nDCG@10 of each retrieval configuration on the real heldout queries and on questions generated "
             "from the corpus alone; Kendall's τ compares the two orders (target ≥ 0.8).", "",
             "| set | real q | generated q (kept / items) | judged answerable | τ | "
             + " | ".join(result["sets"][0]["modes"]) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(result["sets"][0]["modes"])]
    for s in result["sets"]:
        g = s["generation"]
        pairs = " | ".join(f"{r:.3f} / {q:.3f}" for r, q in zip(s["real_ndcg10"], s["generated_ndcg10"]))
        judged = "–" if g["judged_answerable"] is None else f"{100 * g['judged_answerable']:.0f} %"
        lines.append(f"| {s['set']} ({s['embedder']}) | {s['real_queries']} | {s['generated_queries']} "
                     f"({g['kept']} / {g['items']}) | {judged} | {s['kendall_tau']} | {pairs} |")
    lines += ["", "Cells: real / generated nDCG@10. Dropped items by reason: "
              + "; ".join(f"{s['set']}: {s['generation']['dropped']}" for s in result["sets"]),
              "", f"Sampling: temperature {result['temperature']}, top_p {result['top_p']}, seed {result['seed']}, "
              f"{result['n']} chunks per set. CPU: {result['cpu']}. {result['seconds']} s.",
              f"Command: `{result['command']}`", ""]
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    fig, axes = plt.subplots(1, len(result["sets"]), figsize=(4.2 * len(result["sets"]), 3.8), squeeze=False)
    for ax, s in zip(axes[0], result["sets"]):
        ax.scatter(s["real_ndcg10"], s["generated_ndcg10"])
        for mode, x, y in zip(s["modes"], s["real_ndcg10"], s["generated_ndcg10"]):
            ax.annotate(mode, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("nDCG@10, real labels")
        ax.set_ylabel("nDCG@10, generated set")
        ax.set_title(f"{s['set']}: τ = {s['kendall_tau']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default="scifact,squad,korquad")
    p.add_argument("--n", type=int, default=60, help="chunks sampled per set")
    p.add_argument("--limit", type=int, default=300, help="real heldout queries per SQuAD-style set")
    p.add_argument("--model", default="qwen2.5-1.5b")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--work", default="indexes/synth-sets", help="where generated English sets are kept (resumable)")
    p.add_argument("--out", type=Path, default=Path("eval/results/synth_validation.json"))
    args = p.parse_args()
    t = time.perf_counter()
    sets = [validate(name, args) for name in args.sets.split(",")]
    result = {"model": args.model, "n": args.n, "temperature": args.temperature, "top_p": args.top_p,
              "seed": args.seed, "sets": sets, "cpu": cpu_info(), "seconds": round(time.perf_counter() - t, 1),
              "command": "python -m eval.validate_synth " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                                    vars(args).items() if k not in ("out", "work"))}
    write_report(result, args.out)
    print(json.dumps({s["set"]: s["kendall_tau"] for s in sets}))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
