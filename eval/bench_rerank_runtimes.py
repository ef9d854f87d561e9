"""Cross-encoder runtimes side by side: PyTorch float32 / bfloat16 autocast / dynamic int8, and
ONNX Runtime float32 / graph-optimised / dynamic int8 (when ``onnxruntime`` and ``onnx`` are
installed: ``pip install onnxruntime onnx``; the service itself does not need them).

    python -m eval.bench_rerank_runtimes [--reranker models/reranker] [--queries 20] [--pairs 30]

Each query scores ``--pairs`` SciFact abstracts at max length 256 (padded to 256: abstracts are
longer), all variants interleaved per query on the same 2 threads. Reports the median time and
the largest logit difference from PyTorch float32. Writes eval/results/bench_rerank_runtimes.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from eval.common import RESULTS, SHARED_DATA, read_jsonl, write_json

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def export_onnx(model, tok, out_dir: Path) -> dict[str, Path]:
    """float32 export, ORT's BERT graph optimisation, and dynamic int8 of the optimised graph."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    enc = tok(["q", "q"], ["a passage", "another passage"], return_tensors="pt", padding=True)
    paths = {"ort_float32": out_dir / "model.onnx", "ort_optimised": out_dir / "model_opt.onnx",
             "ort_int8": out_dir / "model_opt_int8.onnx"}
    torch.onnx.export(model, tuple(enc[n] for n in INPUTS), str(paths["ort_float32"]), input_names=INPUTS,
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in INPUTS}, "logits": {0: "batch"}})
    cfg = model.config
    opt = optimizer.optimize_model(str(paths["ort_float32"]), model_type="bert", opt_level=1,
                                   num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size)
    opt.save_model_to_file(str(paths["ort_optimised"]))
    quantize_dynamic(str(paths["ort_optimised"]), str(paths["ort_int8"]), weight_type=QuantType.QInt8,
                     per_channel=True, extra_options={"DefaultTensorType": 1})  # 1 = FLOAT
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reranker", default="models/reranker")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.reranker)
    model = AutoModelForSequenceClassification.from_pretrained(args.reranker).eval()
    quantised = AutoModelForSequenceClassification.from_pretrained(args.reranker).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(quantised, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)

    def torch_fn(m, bf16: bool = False):
        def run(q: str, ps: list[str]) -> np.ndarray:
            enc = tok([q] * len(ps), ps, truncation=True, max_length=256, padding=True, return_tensors="pt")
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with torch.inference_mode(), ctx:
                return m(**enc).logits[:, 0].float().numpy()
        return run

    variants = {"torch_float32": torch_fn(model), "torch_bfloat16": torch_fn(model, bf16=True),
                "torch_int8": torch_fn(quantised)}
    tmp = tempfile.TemporaryDirectory()
    try:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
        for name, path in export_onnx(model, tok, Path(tmp.name)).items():
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

            def run(q: str, ps: list[str], sess=sess) -> np.ndarray:
                enc = tok([q] * len(ps), ps, truncation=True, max_length=256, padding=True,
                          return_tensors="np")
                feeds = {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs()}
                return sess.run(None, feeds)[0][:, 0]
            variants[name] = run
    except ImportError:
        print("onnxruntime/onnx not installed: PyTorch variants only (pip install onnxruntime onnx)")

    corpus = read_jsonl(SHARED_DATA / "scifact" / "corpus.jsonl")
    docs = [f"{d['title']} {d['text']}" for d, _ in zip(corpus, range(args.queries * args.pairs))]
    queries = [q["text"] for q, _ in zip(read_jsonl(SHARED_DATA / "scifact" / "queries.jsonl"),
                                         range(args.queries))]
    for f in variants.values():  # warm-up
        f(queries[0], docs[:4])
    times: dict[str, list[float]] = {k: [] for k in variants}
    diffs: dict[str, float] = {k: 0.0 for k in variants}
    for i, q in enumerate(queries):
        ps = docs[i * args.pairs:(i + 1) * args.pairs]
        ref = None
        for name, f in variants.items():
            t = time.perf_counter()
            out = f(q, ps)
            times[name].append((time.perf_counter() - t) * 1000)
            ref = out if ref is None else ref
            diffs[name] = max(diffs[name], float(np.abs(out - ref).max()))
    tmp.cleanup()
    summary = {k: {"p50_ms": round(statistics.median(v), 1), "max_logit_diff": round(diffs[k], 3)}
               for k, v in times.items()}
    result = {"reranker": args.reranker, "queries": len(queries), "pairs": args.pairs, "max_length": 256,
              "threads": args.threads, "variants": summary}
    write_json(RESULTS / "bench_rerank_runtimes.json", result)
    head = f"runtime ({len(queries)} queries × {args.pairs} pairs, max length 256, {args.threads} threads)"
    lines = [f"| {head} | p50 ms | max logit diff vs torch float32 |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['p50_ms']:.1f} | {v['max_logit_diff']:.3f} |" for k, v in summary.items()]
    lines += ["", "Command: `python -m eval.bench_rerank_runtimes`", ""]
    (RESULTS / "bench_rerank_runtimes.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
