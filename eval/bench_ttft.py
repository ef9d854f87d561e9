"""Time to first token, side by side: whole chunks as before vs sentence windows + prompt cache.

The same questions run through two answer pipelines in one process, on one machine, sharing the
retriever (each with its own llama.cpp context, so neither disturbs the other's cache), alternating
which goes first:

* ``chunks``: every passage whole, no saved prompt states (only the previous prompt's prefix is
  reused, as llama.cpp does by itself), the engine's default batch;
* ``windows``: the service's defaults: sentence windows, the prompt-state cache, the engine settings.

Sets: English and Korean questions over the bundled corpus (the standalone turns of
``eval/data/conversations.jsonl`` with a gold phrase), and Korean questions over long KorQuAD
passages (heldout articles, indexed in a temporary directory in RAM and deleted afterwards).
Reported per set: TTFT p50/p95, prompt tokens, total time, answered with the gold phrase.

    python -m eval.bench_ttft --index indexes/default --out eval/results/bench_ttft.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from eval.answers import contains_gold
from eval.common import RESULTS, ROOT, SHARED_DATA, cpu_info, read_jsonl, write_json
from rag.answering.pipeline import AnswerPipeline
from rag.config import Settings
from rag.datasets import iter_squad, part_of
from rag.models.generator import make_generator
from rag.retrieval.factory import build_retriever
from rag.types import Document, GenParams

Question = tuple[str, str]  # (question, gold phrase)


def bundled_questions(lang: str, n: int) -> list[Question]:
    """Standalone questions over the bundled corpus with their gold phrase, first ``n`` distinct."""
    seen: dict[str, str] = {}
    for conv in read_jsonl(ROOT / "eval" / "data" / "conversations.jsonl"):
        if conv["corpus"] != "bundled" or conv["lang"] != lang:
            continue
        for turn in conv["turns"]:
            if turn["answer"] and turn["standalone"] not in seen:
                seen[turn["standalone"]] = turn["answer"]
    return list(seen.items())[:n]


def korquad_long(path: Path, n_articles: int, n: int) -> tuple[list[Document], list[Question]]:
    """Heldout KorQuAD articles (their paragraphs as documents) and ``n`` questions on the longest
    paragraphs, one per paragraph."""
    docs: dict[str, Document] = {}
    by_para: dict[str, Question] = {}
    articles: list[str] = []
    for title, pid, context, qa in iter_squad(path):
        if part_of("article:korquad-" + pid.split("-")[0]) != "heldout":
            continue
        if title not in articles:
            if len(articles) == n_articles:
                continue
            articles.append(title)
        doc_id = f"korquad-{pid}"
        docs.setdefault(doc_id, Document(doc_id=doc_id, text=context, title=title.replace("_", " "),
                                         source=f"korquad:{pid}", format="korquad"))
        by_para.setdefault(doc_id, (qa["question"], qa["answers"][0]["text"]))
    longest = sorted(by_para, key=lambda d: -len(docs[d].text))[:n]
    return list(docs.values()), [by_para[d] for d in longest]


def pipelines(base: Settings, index_dir: Path) -> dict[str, AnswerPipeline]:
    """The two pipelines over one retriever (each generator loaded once, here)."""
    variants = {"chunks": base.model_copy(update={"passage_text": "chunk", "llm_prompt_cache_mb": 0,
                                                   "llm_batch": 512, "llm_flash_attn": False}),
                "windows": base}
    retriever = build_retriever(base, index_dir)
    out = {}
    for name, s in variants.items():
        gen = make_generator(s)
        gen.load()
        out[name] = AnswerPipeline(retriever, gen, s)
    return out


def run_set(name: str, pipes: dict[str, AnswerPipeline], questions: Sequence[Question], lang: str,
            max_tokens: int, keep_text: bool = True) -> list[dict[str, Any]]:
    """Rows per (question, pipeline). ``keep_text=False`` leaves question, gold and answer out
    (KorQuAD's licence allows no stored derived text)."""
    rows = []
    order = list(pipes)
    for i, (q, gold) in enumerate(tqdm(questions, desc=name, unit="q")):
        for variant in (order if i % 2 == 0 else order[::-1]):  # alternate who goes first
            pipe = pipes[variant]
            params = GenParams(0.0, 1.0, max_tokens, pipe.settings.seed)
            t = time.perf_counter()
            a = pipe.answer(q, params=params)
            rows.append({"set": name, "variant": variant, "question": q, "gold": gold, "refused": a.refused,
                         "reason": a.refusal_reason, "correct": (not a.refused) and contains_gold(a.text, gold, lang),
                         "ttft_ms": a.timings_ms.get("ttft"), "total_ms": round((time.perf_counter() - t) * 1000, 1),
                         "prompt_tokens": a.prompt_tokens, "answer": a.text})
            if not keep_text:
                for key in ("question", "gold", "answer"):
                    rows[-1].pop(key)
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in dict.fromkeys(r["set"] for r in rows):
        per = {}
        for v in dict.fromkeys(r["variant"] for r in rows):
            rs = [r for r in rows if r["set"] == s and r["variant"] == v]
            called = [r for r in rs if r["ttft_ms"] is not None]
            ttft = sorted(r["ttft_ms"] for r in called)
            per[v] = {"questions": len(rs), "llm_called": len(called),
                      "ttft_p50_ms": round(statistics.median(ttft), 1) if ttft else None,
                      "ttft_p95_ms": round(ttft[min(len(ttft) - 1, int(0.95 * len(ttft)))], 1) if ttft else None,
                      "prompt_tokens_p50": statistics.median([r["prompt_tokens"] for r in called]) if called else None,
                      "total_p50_ms": round(statistics.median([r["total_ms"] for r in rs]), 1),
                      "correct": sum(r["correct"] for r in rs), "refused": sum(r["refused"] for r in rs)}
        a, b = per.get("chunks", {}), per.get("windows", {})
        ratio = (b["ttft_p50_ms"] / a["ttft_p50_ms"]) if a.get("ttft_p50_ms") and b.get("ttft_p50_ms") else None
        out.append({"set": s, **{f"{v}": m for v, m in per.items()},
                    "ttft_ratio": round(ratio, 3) if ratio else None})
    return out


def write_report(result: dict[str, Any], out: Path) -> None:
    lines = [f"# Time to first token: whole chunks vs sentence windows ({result['model']})", "",
             f"CPU: {result['cpu']}. Both pipelines in one run, alternating per question; greedy, answers of at "
             f"most {result['max_tokens']} tokens.", "",
             "| set | questions | TTFT p50 chunks (ms) | TTFT p50 windows (ms) | ratio | TTFT p95 chunks / windows "
             "| prompt tokens p50 chunks / windows | correct chunks / windows | refused chunks / windows |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in result["summary"]:
        a, b = s["chunks"], s["windows"]
        lines.append(f"| {s['set']} | {a['questions']} | {a['ttft_p50_ms']} | {b['ttft_p50_ms']} | "
                     f"**{s['ttft_ratio']}×** | {a['ttft_p95_ms']} / {b['ttft_p95_ms']} | "
                     f"{a['prompt_tokens_p50']} / {b['prompt_tokens_p50']} | {a['correct']} / {b['correct']} | "
                     f"{a['refused']} / {b['refused']} |")
    lines += ["", "Settings of the windows pipeline: " + ", ".join(f"{k}={v}" for k, v in result["settings"].items()),
              "", f"Command: `{result['command']}`"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot(result, out.with_suffix(".png"))


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [s["set"] for s in result["summary"]]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    xs = range(len(sets))
    for off, variant, color in ((-0.2, "chunks", "#999999"), (0.2, "windows", "#1f77b4")):
        vals = [(s[variant]["ttft_p50_ms"] or 0) / 1000 for s in result["summary"]]
        ax.bar([x + off for x in xs], vals, width=0.4, label=variant, color=color)
    ax.set_xticks(list(xs), sets)
    ax.set_ylabel("TTFT p50 (s)")
    ax.set_title(f"Time to first token, {result['model']} on {result['cpu'].split(',')[0]}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, default=ROOT / "indexes" / "default",
                    help="an index of the bundled corpus (rag ingest corpus --index DIR)")
    ap.add_argument("--questions", type=int, default=10, help="questions per set")
    ap.add_argument("--korquad", type=Path, default=SHARED_DATA / "korquad1_dev" / "KorQuAD_v1.0_dev.json")
    ap.add_argument("--korquad-articles", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_ttft.json")
    args = ap.parse_args()
    base = Settings()
    rows: list[dict[str, Any]] = []
    pipes = pipelines(base, args.index)
    for lang in ("en", "ko"):
        rows += run_set(f"bundled {lang}", pipes, bundled_questions(lang, args.questions), lang, args.max_tokens)
    del pipes
    if args.korquad.exists():
        from ingest.pipeline import ingest

        docs, questions = korquad_long(args.korquad, args.korquad_articles, args.questions)
        # The licence allows no stored derived files: the index lives in RAM (/dev/shm) and is deleted.
        with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
            ingest([], Path(tmp) / "idx", base, documents=docs, progress=True)
            pipes = pipelines(base, Path(tmp) / "idx")
            rows += run_set("KorQuAD long ko", pipes, questions, "ko", args.max_tokens, keep_text=False)
            del pipes
    keys = ("passage_text", "window_tokens", "window_neighbours", "llm_batch", "llm_flash_attn",
            "llm_prompt_cache_mb", "context_passages", "llm_threads")
    result = {"model": base.llm_model, "cpu": cpu_info(), "max_tokens": args.max_tokens,
              "settings": {k: getattr(base, k) for k in keys}, "summary": summarize(rows), "rows": rows,
              "command": "python -m eval.bench_ttft" + (f" --questions {args.questions}" if args.questions != 10 else "")}
    write_json(args.out, result)
    write_report(result, args.out)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
