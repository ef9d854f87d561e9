"""Which generator to run: every candidate through the same small answer eval, one table, one plot.

Each model answers the same questions through the same retrieval (the real /ask pipeline), one
fixed judge model grades every answer, and the model's facts are read from its GGUF file (local)
or given (remote). Cost per 1,000 questions: local models in CPU-seconds (wall time x threads),
remote ones from input and output prices per million tokens (output tokens cost more).
"""

from __future__ import annotations

import gc
import os
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eval.answers import percentile
from eval.common import write_json

# Facts a GGUF file may not carry (Qwen's files have no general.license): the model cards' licences.
LICENCES = {"smollm2": "Apache-2.0", "qwen2.5-0.5b": "Apache-2.0", "qwen2.5-1.5b": "Apache-2.0"}


def rss_bytes() -> int | None:
    """Resident memory of this process (None where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def speed(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """TTFT percentiles and the median prompt (prefill) and decode rates of the answered questions."""
    called = [r for r in records if r.get("ttft_ms") and r.get("tokens")]
    prefill = [r["prompt_tokens"] / (r["ttft_ms"] / 1000) for r in called if r.get("prompt_tokens")]
    decode = [(r["tokens"] - 1) / ((r["generate_ms"] - r["ttft_ms"]) / 1000) for r in called
              if r["tokens"] > 1 and r["generate_ms"] > r["ttft_ms"]]
    return {"ttft_p50_ms": percentile([r["ttft_ms"] for r in called], 0.5),
            "ttft_p95_ms": percentile([r["ttft_ms"] for r in called], 0.95),
            "prefill_tok_s": round(statistics.median(prefill), 1) if prefill else None,
            "decode_tok_s": round(statistics.median(decode), 1) if decode else None}


def cost_per_1000(records: Sequence[dict[str, Any]], threads: int, price_in: float | None,
                  price_out: float | None) -> dict[str, float | None]:
    """CPU-seconds per 1,000 questions (local), and USD per 1,000 at the given per-million prices."""
    n = len(records) or 1
    wall = sum((r.get("generate_ms") or 0.0) for r in records) / 1000
    tokens_in = sum(r.get("prompt_tokens") or 0 for r in records)
    tokens_out = sum(r.get("tokens") or 0 for r in records)
    usd = None
    if price_in is not None and price_out is not None:
        usd = round((tokens_in * price_in + tokens_out * price_out) / 1e6 * 1000 / n, 4)
    return {"cpu_seconds": round(wall * threads * 1000 / n, 1) if threads else None, "usd": usd,
            "prompt_tokens_per_q": round(tokens_in / n, 1), "output_tokens_per_q": round(tokens_out / n, 1)}


def quality(metrics: dict[str, Any], judge: str | None) -> dict[str, Any]:
    j = (metrics.get("judges") or {}).get(judge or "", {})
    return {k: metrics.get(k) for k in ("contains_gold", "false_refusal", "unanswerable_refused",
                                        "citation_accuracy", "f1")} | {
        "judge_correct": j.get("correct"), "judge_faithful": j.get("faithful"),
        "judge_refusal_right": j.get("refusal_right"), "judge_unparsed": j.get("unparsed")}


def facts_of(generator: Any, name: str, remote: dict[str, Any] | None) -> dict[str, Any]:
    if remote is not None:
        return {"kind": "remote", "open": remote.get("open"), "licence": remote.get("licence"),
                "parameters": None, "file_bytes": None, "quantization": None, "trained_context": None,
                "context_used": generator.context_tokens}
    facts = dict(generator.facts())
    facts["licence"] = LICENCES.get(name) or facts.get("licence")
    facts.update(kind="local", open=True)
    return facts


def write_report(result: dict[str, Any], out: Path) -> None:
    write_json(out.with_suffix(".json"), result)
    out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    plot(result, out.with_suffix(".png"))


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def _num(v: Any, fmt: str = "{:,.0f}") -> str:
    return "–" if v is None else fmt.format(v)


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Choosing a generator ({len(result['models'])} models, judge: {result['judge'] or 'none'})", "",
             "| model | kind | parameters | quantisation | file | context (trained / used) | licence | open | "
             "RAM loaded | perplexity en / ko | bits/byte en / ko |",
             "|---|---|---:|---|---:|---:|---|---|---:|---:|---:|"]
    for m in result["models"]:
        f, p = m["facts"], m.get("perplexity") or {}
        ppl = " / ".join(_num(p.get(lang, {}).get("ppl_bits"), "{:.1f}") for lang in ("en", "ko"))
        bpb = " / ".join(_num(p.get(lang, {}).get("bits_per_byte"), "{:.2f}") for lang in ("en", "ko"))
        lines.append(
            f"| {m['model']} | {f['kind']} | {_num(f['parameters'] and f['parameters'] / 1e6, '{:,.0f} M')} | "
            f"{f['quantization'] or '–'} | {_num(f['file_bytes'] and f['file_bytes'] / 2**20, '{:,.0f} MB')} | "
            f"{_num(f['trained_context'])} / {_num(f['context_used'])} | {f['licence'] or '–'} | "
            f"{'yes' if f['open'] else 'no' if f['open'] is False else '–'} | "
            f"{_num(m['ram_bytes'] and m['ram_bytes'] / 2**20, '{:,.0f} MB')} | {ppl} | {bpb} |")
    lines += ["", "| model | data set | q | contains gold | false refusals | unanswerable refused | citation acc. | "
              "judge: correct / faithful / refusal right | TTFT p50 / p95 (ms) | prefill / decode tok/s | "
              "per 1,000 q: CPU-s / USD |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in result["models"]:
        for d in m["datasets"]:
            q, s, c = d["quality"], d["speed"], d["cost"]
            lines.append(
                f"| {m['model']} | {d['dataset']} | {d['questions']} | {_pct(q['contains_gold'])} | "
                f"{_pct(q['false_refusal'])} | {_pct(q['unanswerable_refused'])} | {_pct(q['citation_accuracy'])} | "
                f"{_pct(q['judge_correct'])} / {_pct(q['judge_faithful'])} / {_pct(q['judge_refusal_right'])} | "
                f"{_num(s['ttft_p50_ms'])} / {_num(s['ttft_p95_ms'])} | {_num(s['prefill_tok_s'], '{:.0f}')} / "
                f"{_num(s['decode_tok_s'], '{:.1f}')} | {_num(c['cpu_seconds'])} / {_num(c['usd'], '{:.3f}')} |")
    lines += judge_lines(result.get("judge_agreement") or {})
    lines += ["", "Contains gold: answered answerable questions whose answer contains a gold answer. Judge verdicts "
              "come from one model for all rows (a judge grading its own answers may favour them). Local cost: "
              "generation wall time × threads; remote: input and output prices per million tokens "
              f"({result['prices']}).", "", f"CPU: {result['cpu']}. {result['seconds']} s. Command: "
              f"`{result['command']}`", ""]
    return "\n".join(lines)


def judge_lines(agreement: dict[str, dict[str, Any]]) -> list[str]:
    """Each judge's agreement with the gold-based metrics, over every model's answers."""
    if not agreement:
        return []
    lines = ["", "| judge | data set | answers | unparsed | correct vs contains-gold: acc / κ (n) | "
             "refusal right vs gold: acc / κ (n) |", "|---|---|---:|---:|---:|---:|"]
    for dataset, judges in agreement.items():
        for name, j in judges.items():
            a, r = j["vs_contains_gold"], j["vs_refusal_gold"]
            lines.append(f"| {name} | {dataset} | {j['judged']} | {j['unparsed']} | {_pct(a['accuracy'])} / "
                         f"{_num(a['kappa'], '{:.2f}')} ({a['n']}) | {_pct(r['accuracy'])} / "
                         f"{_num(r['kappa'], '{:.2f}')} ({r['n']}) |")
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    """Quality (contains gold) against latency (TTFT p50), one point per model and data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    markers = "os^Dv"
    for i, d_name in enumerate(sorted({d["dataset"] for m in result["models"] for d in m["datasets"]})):
        for m in result["models"]:
            for d in m["datasets"]:
                x, y = d["speed"]["ttft_p50_ms"], d["quality"]["contains_gold"]
                if d["dataset"] == d_name and x is not None and y is not None:
                    ax.scatter(x / 1000, y, marker=markers[i % len(markers)], s=60)
                    ax.annotate(f"{m['model']} ({d_name})", (x / 1000, y), fontsize=7, xytext=(4, 3),
                                textcoords="offset points")
    ax.set_xlabel("time to first token, p50 (s)")
    ax.set_ylabel("contains gold (answered answerable)")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(left=0)
    ax.set_title("Answer quality against latency", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(sets: Sequence[tuple[str, list, Any]], plans: Sequence[tuple[str, Any, dict[str, Any] | None]],
            judges: Sequence[Any], price_in: float | None, price_out: float | None, with_perplexity: bool,
            progress: bool = True, on_skip: Callable[[str, str], None] = lambda name, why: None) -> dict[str, Any]:
    """Each plan's generator through the same answer eval on every set.

    ``sets`` are (name, questions, retriever); ``plans`` (name, settings, remote facts or None for a
    local model); ``judges`` the settings of the local judge models (the first fills the table). A
    model that cannot be loaded is skipped (``on_skip``); none loaded is a ConfigError. Local models
    are released before the next one loads."""
    from eval.answers import run
    from eval.common import cpu_info
    from rag.answering.pipeline import AnswerPipeline
    from rag.errors import ConfigError
    from rag.models.generator import make_generator

    checkers = [make_generator(j) for j in judges]
    for c in checkers:
        c.load()
    checker = checkers[0] if checkers else None
    pooled: dict[str, list[dict]] = {}  # data set -> every model's records, for the judges' agreement
    rows, skipped = [], {}
    for name, s, remote_facts in plans:
        try:
            generator = make_generator(s)
            before = rss_bytes()
            generator.load()
        except ConfigError as exc:
            skipped[name] = str(exc)
            on_skip(name, str(exc))
            continue
        ram = (rss_bytes() - before) if remote_facts is None and before is not None else None
        row = {"model": name, "facts": facts_of(generator, name, remote_facts), "ram_bytes": ram, "datasets": []}
        for set_name, chosen, retriever in sets:
            res = run(AnswerPipeline(retriever, generator, s), set_name, chosen, keep_text=False,
                      progress=progress, judges=checkers)
            pooled.setdefault(set_name, []).extend(res["records"])
            local = remote_facts is None
            row["datasets"].append({"dataset": set_name, "questions": len(chosen),
                                    "quality": quality(res["metrics"], checker.name if checker else None),
                                    "speed": speed(res["records"]),
                                    "cost": cost_per_1000(res["records"], s.llm_threads if local else 0,
                                                          None if local else price_in, None if local else price_out)})
        if remote_facts is None:
            release(generator)
            if with_perplexity:
                row["perplexity"] = local_perplexity(name)
        rows.append(row)
    if not rows:
        raise ConfigError(f"no model could be loaded: {skipped}")
    remote = any(r is not None for _, _, r in plans)
    return {"models": rows, "skipped": skipped, "judge": checker.name if checker else None,
            "judge_agreement": judge_agreement(pooled),
            "prices": f"in {price_in}, out {price_out} USD per 1M tokens" if remote else "no remote model",
            "cpu": cpu_info()}


def judge_agreement(pooled: dict[str, list[dict]]) -> dict[str, dict[str, object]]:
    """Per data set and judge, over every model's answers: agreement with the gold-based metrics."""
    from eval.answers import Record, judge_summary

    fields = set(Record.__dataclass_fields__)
    out = {}
    for name, records in pooled.items():
        summary = judge_summary([Record(**{k: v for k, v in r.items() if k in fields}) for r in records])
        out[name] = {j: {k: v[k] for k in ("judged", "unparsed", "vs_contains_gold", "vs_refusal_gold")}
                     for j, v in summary.items()}
    return out


def local_perplexity(model: str) -> dict[str, dict[str, float]]:
    """Perplexity and bits per byte per language on a small bundled sample (2 texts x 256 tokens)."""
    from eval.perplexity import corpus_sample, load_llama
    from eval.perplexity import perplexity as measure

    llm = load_llama(model, 512)
    try:
        res = measure(llm, corpus_sample(Path("corpus"), per_lang=2), max_tokens=256)
    finally:
        del llm
    return {lang: {"ppl_bits": round(sc.ppl_bits, 3), "bits_per_byte": round(sc.bits_per_byte, 4),
                   "tokens": sc.tokens} for lang, sc in res.by_lang.items()}


def release(generator: Any) -> None:
    """Free a local model before loading the next (two 1.5B models need not share RAM)."""
    close = getattr(generator, "close", None)
    if callable(close):
        close()
    gc.collect()
