"""Where the prefill time goes: llama.cpp prefill speed by engine setting, prompt length and language.

Each configuration loads the local GGUF model once and evaluates prompts of fixed token counts cut
from the bundled corpus (English pages and Korean pages), so that English and Korean are compared
per token, on the same machine, in one run. One factor changes at a time from the defaults.

    python -m eval.bench_engine --model qwen2.5-1.5b --out eval/results/bench_engine.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from eval.common import RESULTS, ROOT, cpu_info, write_json

# One factor at a time from llama-cpp-python's defaults (batch 512, no flash attention, 2 threads).
CONFIGS: list[dict[str, Any]] = [
    {"name": "defaults", "n_batch": 512, "n_ubatch": 512, "flash_attn": False, "n_threads": 2},
    {"name": "batch 128", "n_batch": 128, "n_ubatch": 128, "flash_attn": False, "n_threads": 2},
    {"name": "batch 256", "n_batch": 256, "n_ubatch": 256, "flash_attn": False, "n_threads": 2},
    {"name": "flash attention", "n_batch": 512, "n_ubatch": 512, "flash_attn": True, "n_threads": 2},
    {"name": "flash + batch 256", "n_batch": 256, "n_ubatch": 256, "flash_attn": True, "n_threads": 2},
    {"name": "1 thread", "n_batch": 512, "n_ubatch": 512, "flash_attn": False, "n_threads": 1},
]


def corpus_text(lang: str) -> str:
    files = sorted((ROOT / "corpus").rglob("*.md"))
    pick = [f for f in files if f.name != "README.md" and (f.stem.endswith("-ko") == (lang == "ko"))]
    return "\n\n".join(f.read_text(encoding="utf-8") for f in pick)


def measure(llm: Any, tokens: list[int], reps: int) -> float:
    """Median seconds to evaluate ``tokens`` from an empty context."""
    times = []
    for _ in range(reps):
        llm.reset()
        llm._ctx.kv_cache_clear()
        t = time.perf_counter()
        llm.eval(tokens)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(model: str, lengths: list[int], reps: int, n_ctx: int) -> dict[str, Any]:
    from llama_cpp import Llama

    from rag.models.gguf import resolve_gguf

    path = str(resolve_gguf(model))
    texts = {lang: corpus_text(lang) for lang in ("en", "ko")}
    rows = []
    for cfg in CONFIGS:
        params = {k: v for k, v in cfg.items() if k != "name"}
        llm = Llama(model_path=path, n_ctx=n_ctx, verbose=False, **params)
        for lang, text in texts.items():
            ids = llm.tokenize(text.encode("utf-8"), add_bos=True)
            chars_per_token = len(text) / len(ids)
            for n in lengths:
                sec = measure(llm, ids[:n], reps)
                rows.append({"config": cfg["name"], **params, "lang": lang, "tokens": n,
                             "seconds": round(sec, 3), "tokens_per_s": round(n / sec, 1),
                             "chars_per_token": round(chars_per_token, 2)})
                print(f"{cfg['name']:>18} {lang} {n:5d} tokens: {sec:6.2f} s  {n / sec:6.1f} tok/s", flush=True)
        del llm
    return {"model": model, "n_ctx": n_ctx, "reps": reps, "cpu": cpu_info(), "rows": rows}


def write_report(result: dict[str, Any], out: Path) -> None:
    lines = [f"# Prefill speed by engine setting: {result['model']}", "",
             f"CPU: {result['cpu']}. Context {result['n_ctx']} tokens; median of {result['reps']} runs per cell; "
             "tokens per second of prompt evaluation from an empty context.", "",
             "| setting | lang | " + " | ".join(f"{n} tok" for n in sorted({r['tokens'] for r in result['rows']}))
             + " |", "|---|---|" + "---:|" * len({r['tokens'] for r in result['rows']})]
    keys: dict[tuple[str, str], dict[int, float]] = {}
    for r in result["rows"]:
        keys.setdefault((r["config"], r["lang"]), {})[r["tokens"]] = r["tokens_per_s"]
    for (cfg, lang), cells in keys.items():
        lines.append(f"| {cfg} | {lang} | " + " | ".join(f"{cells[n]:.1f}" for n in sorted(cells)) + " |")
    cpt = {r["lang"]: r["chars_per_token"] for r in result["rows"]}
    lines += ["", f"Characters per token: English {cpt.get('en')}, Korean {cpt.get('ko')}.",
              f"Command: `python -m eval.bench_engine --model {result['model']}`"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-1.5b")
    ap.add_argument("--lengths", default="256,1024,2048")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_engine.json")
    args = ap.parse_args()
    result = run(args.model, [int(x) for x in args.lengths.split(",")], args.reps, args.n_ctx)
    write_json(args.out, result)
    write_report(result, args.out)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
