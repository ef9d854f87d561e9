"""Near-topic questions through the real pipeline: are answers from outside the passages caught?

``eval/data/near_topic.jsonl`` holds questions that the bundled corpus and the SQuAD 2.0 heldout
articles make plausible but do not answer (``near_topic.md``). Each runs with the grounding check
in ``flag`` mode (the answer unchanged, every sentence's verdict recorded), so one run prices the
three modes: ``off`` (only the model's own refusals), ``flag`` (refused or flagged unsupported) and
``enforce`` (refused, or turned into a refusal because nothing of substance is supported).
Reported over the questions that reach the model (the retrieval gate refuses the others first).

    python -m eval.grounding --out eval/results/grounding_near_topic.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from eval.common import RESULTS, ROOT, SHARED_DATA, cpu_info, read_jsonl, write_json
from rag.answering.grounding import has_substance
from rag.answering.pipeline import AnswerPipeline
from rag.config import Settings
from rag.models.generator import make_generator
from rag.retrieval.factory import build_retriever


def pipelines(settings: Settings, squad: Path) -> dict[str, AnswerPipeline]:
    """One pipeline per corpus, sharing the generator: the bundled corpus and SQuAD 2.0 dev."""
    from eval.answers import load_qa
    from ingest.pipeline import ingest

    gen = make_generator(settings)
    gen.load()
    out = {}
    bundled = ROOT / "indexes" / "near-topic-bundled"
    ingest([ROOT / "corpus"], bundled, settings, progress=False)
    out["bundled"] = AnswerPipeline(build_retriever(settings, bundled), gen, settings)
    if squad.exists():
        name, docs, _ = load_qa(squad)
        index = ROOT / "indexes" / f"answers-{name}-{settings.embedder}"
        ingest([], index, settings, documents=docs, progress=False)
        out["squad"] = AnswerPipeline(build_retriever(settings, index), gen, settings)
    return out


def ask(pipes: dict[str, AnswerPipeline], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for item in tqdm(items, desc="near-topic", unit="q"):
        pipe = pipes.get(item["corpus"])
        if pipe is None:
            continue
        a = pipe.answer(item["question"])
        gate = a.refused and not a.prompt_tokens
        rows.append({"id": item["id"], "lang": item["lang"], "corpus": item["corpus"], "question": item["question"],
                     "answer": a.text, "gate_refused": gate, "model_refused": a.refused and not gate,
                     "flagged": any(not g.supported for g in a.grounding),
                     "enforce_refuses": (not a.refused) and bool(a.grounding) and not has_substance(a.grounding),
                     "grounding": [{"sentence": g.sentence, "supported": g.supported, "lexical": g.lexical,
                                    "learned": g.learned} for g in a.grounding],
                     "grounding_ms": a.timings_ms.get("grounding"), "total_ms": a.timings_ms.get("total")})
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(f"{r['corpus']} {r['lang']}", []).append(r)
    groups["all"] = rows
    out = []
    for name, rs in groups.items():
        reached = [r for r in rs if not r["gate_refused"]]
        n = len(reached)

        def share(pred) -> float | None:
            return round(sum(pred(r) for r in reached) / n, 4) if n else None

        times = [r["grounding_ms"] for r in reached if r["grounding_ms"] is not None]
        out.append({"set": name, "questions": len(rs), "gate_refused": len(rs) - n, "reached_model": n,
                    "off": share(lambda r: r["model_refused"]),
                    "flag": share(lambda r: r["model_refused"] or r["flagged"]),
                    "enforce": share(lambda r: r["model_refused"] or r["enforce_refuses"]),
                    "check_ms_p50": round(statistics.median(times), 2) if times else None})
    return out


def write_report(result: dict[str, Any], out: Path) -> None:
    lines = [f"# Near-topic questions: answers caught by the grounding check ({result['model']})", "",
             f"CPU: {result['cpu']}. Share of the questions that reached the model which ended refused "
             "(off: by the model), refused or flagged unsupported (flag), or refused (enforce). Target ≥ 90 %.", "",
             "| set | questions | refused by the gate | reached the model | off | flag | enforce | check p50 (ms) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f} %"

    for s in result["summary"]:
        lines.append(f"| {s['set']} | {s['questions']} | {s['gate_refused']} | {s['reached_model']} | {pct(s['off'])} "
                     f"| {pct(s['flag'])} | {pct(s['enforce'])} | {s['check_ms_p50']} |")
    lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in result["settings"].items()), "",
              f"{result['seconds']} s. Command: `{result['command']}`"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=Path, default=ROOT / "eval" / "data" / "near_topic.jsonl")
    ap.add_argument("--squad", type=Path, default=SHARED_DATA / "squad2_dev" / "dev-v2.0.json")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "grounding_near_topic.json")
    args = ap.parse_args()
    settings = Settings().model_copy(update={"grounding": "flag"})
    items = list(read_jsonl(args.questions))[: args.limit]
    t = time.perf_counter()
    rows = ask(pipelines(settings, args.squad), items)
    keys = ("grounding_min_overlap", "grounding_min_rerank", "passage_text", "llm_model", "embedder", "reranker")
    result = {"model": settings.llm_model, "cpu": cpu_info(), "settings": {k: getattr(settings, k) for k in keys},
              "summary": summarize(rows), "rows": rows, "seconds": round(time.perf_counter() - t, 1),
              "command": "python -m eval.grounding" + (f" --limit {args.limit}" if args.limit else "")}
    write_json(args.out, result)
    write_report(result, args.out)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
