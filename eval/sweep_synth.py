"""What temperature and top_p do to a generated test set, measured on one index.

The same sampled chunks are given to the generator at each (temperature, top_p); for each setting
the report shows how many items survive the filters (and why the rest were dropped), how varied
the kept questions are (distinct words over all words), how many the judge found answerable, and
the time per item.

    python -m eval.sweep_synth --index indexes/bundled --n 20 --grid 0.2:0.9,0.7:0.9,1.2:0.9,0.7:1.0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from eval.common import cpu_info, write_json
from eval.synth import SynthConfig, finalize, plan, run
from rag.config import get_settings, with_options


def sweep(index_dir: Path, grid: list[tuple[float, float]], n: int, model: str, work: Path, seed: int
          ) -> list[dict[str, Any]]:
    from rag.models.generator import make_generator
    from rag.retrieval.factory import open_index

    settings = with_options(get_settings(), llm_model=model)
    index = open_index(index_dir, settings)
    generator = make_generator(settings)
    generator.load()
    rows = []
    for temperature, top_p in grid:
        config = SynthConfig(n=n, temperature=temperature, top_p=top_p, seed=seed)
        out = work / f"t{temperature}-p{top_p}"
        items = list(run(plan(index, config), generator, generator, config, out))
        s = finalize(items, index, out, config, {"model": generator.name})
        rows.append({"temperature": temperature, "top_p": top_p, "items": s["items"], "kept": s["kept"],
                     "kept_share": round(s["kept"] / s["items"], 4) if s["items"] else None,
                     "judged_answerable": s["judged_answerable"], "distinct_words": s["distinct_words"],
                     "dropped": s["dropped"], "languages": s["languages"], "seconds_per_item": s["seconds_per_item"]})
    return rows


def write_report(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_json(out.with_suffix(".json"), result)
    lines = [f"# Generated sets by temperature and top_p ({result['model']}, {result['n']} chunks each)", "",
             "| temperature | top_p | items | kept | judged answerable | distinct words | dropped | s / item |",
             "|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in result["rows"]:
        judged = "–" if r["judged_answerable"] is None else f"{100 * r['judged_answerable']:.0f} %"
        lines.append(f"| {r['temperature']} | {r['top_p']} | {r['items']} | {r['kept']} ({100 * (r['kept_share'] or 0):.0f} %) "
                     f"| {judged} | {r['distinct_words']} | {r['dropped']} | {r['seconds_per_item']} |")
    lines += ["", f"Index: `{result['index']}`. CPU: {result['cpu']}. {result['seconds']} s. "
              f"Command: `{result['command']}`", ""]
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in result["rows"]:
        ax.scatter(r["distinct_words"] or 0, r["kept_share"] or 0, s=60)
        ax.annotate(f"T={r['temperature']}, p={r['top_p']}", (r["distinct_words"] or 0, r["kept_share"] or 0),
                    fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("variety: distinct words / words of kept questions")
    ax.set_ylabel("share of items kept by the filters")
    ax.set_ylim(0, 1.05)
    ax.set_title("Sampling settings: variety against yield", fontsize=10)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--grid", default="0.2:0.9,0.7:0.9,1.2:0.9,0.7:1.0", help="temperature:top_p pairs")
    p.add_argument("--model", default="qwen2.5-1.5b")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--work", type=Path, default=Path("indexes/synth-sweep"))
    p.add_argument("--out", type=Path, default=Path("eval/results/synth_sampling.json"))
    args = p.parse_args()
    grid = [(float(t), float(tp)) for t, tp in (pair.split(":") for pair in args.grid.split(","))]
    t0 = time.perf_counter()
    rows = sweep(args.index, grid, args.n, args.model, args.work, args.seed)
    result = {"model": args.model, "n": args.n, "index": str(args.index), "rows": rows, "cpu": cpu_info(),
              "seconds": round(time.perf_counter() - t0, 1),
              "command": f"python -m eval.sweep_synth --index {args.index} --n {args.n} --grid {args.grid} "
                         f"--model {args.model} --seed {args.seed}"}
    write_report(result, args.out)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
