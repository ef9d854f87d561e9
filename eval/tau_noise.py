"""How much of Kendall's tau between generated and real labels is noise? A bootstrap.

Reads a generated set kept by ``eval.validate_synth`` (``indexes/synth-sets/NAME/items.jsonl``,
English sets only) and its index, measures the five configurations per query on the generated and
the real heldout queries, then resamples each set with replacement (500 draws) and compares the
resampled order with the real set's full order. The real-against-itself spread is the floor: how
often even real labels of that size reach a given tau.

    python -m eval.tau_noise squad      # or scifact
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from eval.retrieval import parse_modes, run_eval
from eval.validate_synth import MODES, kendall, real_set
from rag.config import get_settings, with_options
from rag.datasets import RetrievalSet
from rag.retrieval.factory import build_retriever


def per_query(result: dict) -> list[dict[str, float]]:
    return [{q: v["nDCG@10"] for q, v in m["per_query"].items()} for m in result["modes"]]


def means(per_mode: list[dict[str, float]], qids: list[str]) -> list[float]:
    return [sum(m.get(q, 0.0) for q in qids) / len(qids) for m in per_mode]


def spread(taus: list[float | None]) -> tuple[float, float, float]:
    """5th, 50th and 95th percentile."""
    t = sorted(x for x in taus if x is not None)
    return round(t[len(t) // 20], 2), round(t[len(t) // 2], 2), round(t[-(len(t) // 20)], 2)


def main(name: str, draws: int = 500) -> None:
    data, embedder = real_set(name, 300)
    settings = with_options(get_settings(), embedder=embedder)
    retriever = build_retriever(settings, Path(f"indexes/synth-{name}-{embedder}"), rerank=True)
    items = [json.loads(line) for line in open(f"indexes/synth-sets/{name}/items.jsonl", encoding="utf-8")]
    kept = [i for i in items if i["dropped"] is None and i["kind"] == "answerable"]
    generated = RetrievalSet("generated", {i["key"]: i["question"] for i in kept},
                             {i["key"]: {i["doc_id"]: 1} for i in kept})
    specs = parse_modes(MODES)
    gen, real = (per_query(run_eval(d, retriever, specs, settings, progress=False)) for d in (generated, data))
    gq, rq = list(gen[0]), list(real[0])
    full = means(real, rq)
    rng = random.Random(1)
    tau_gen = [kendall(full, means(gen, [rng.choice(gq) for _ in gq])) for _ in range(draws)]
    tau_real = [kendall(full, means(real, [rng.choice(rq) for _ in rq])) for _ in range(draws)]
    print(json.dumps({"set": name, "generated_queries": len(gq), "real_queries": len(rq),
                      "tau_generated_p5_p50_p95": spread(tau_gen), "tau_real_resampled_p5_p50_p95": spread(tau_real)}))


if __name__ == "__main__":
    main(sys.argv[1])
