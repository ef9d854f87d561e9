"""Which signal tells an answerable SQuAD 2.0 question from an unanswerable one?

Input: a ``rag eval answers`` report (SQuAD 2.0, texts kept, ideally run with a reranker so its
score is recorded). For the questions the model *answered* (its own refusals already counted),
each candidate signal is scored by its ROC AUC, answerable (positive) vs unanswerable:

* the gate's signals recorded per question: best dense cosine, BM25 ratio, best cross-encoder score;
* lexical coverage: the share of the question's BM25 terms found in the cited passage;
* self-consistency, when the run recorded it (``--set consistency_samples=N``): how far answers
  sampled at a higher temperature agree with the greedy one (``rag.answering.prompt.agreement``);
* ``--llm``: the local LLM as a verifier, P(yes) to "Can this exact question be answered from the
  passage alone?" given the cited passage (first-token probabilities of yes/no).

An AUC near 0.5 means the signal cannot gate; the table also shows, for the LLM verifier, the
share of answered answerable questions kept and answered unanswerable ones rejected per threshold.

    python -m eval.probe_answerability eval/results/dev/answers_squad_dev_prompt1.json --llm
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from eval.common import SHARED_DATA

VERIFY_SYSTEM = "You check whether a passage answers a question. Reply with one word: yes or no."
VERIFY_USER = ("{passage}\n\nQuestion: {question}\n\nCan this exact question be answered from the passage alone? "
               "Watch for details in the question that the passage does not say. Reply yes or no.")


def roc_auc(pos: list[float], neg: list[float]) -> float | None:
    """P(a random positive scores above a random negative), ties counting half."""
    if not pos or not neg:
        return None
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n) + 0.5 * (p == n)).mean())


def p_yes(llm, passage: str, question: str) -> float:
    """P(yes) / (P(yes) + P(no)) for the first answer token (needs ``logits_all=True``)."""
    res = llm.create_chat_completion(
        messages=[{"role": "system", "content": VERIFY_SYSTEM},
                  {"role": "user", "content": VERIFY_USER.format(passage=passage, question=question)}],
        max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=10)
    probs = {"yes": 1e-9, "no": 1e-9}
    for t in res["choices"][0]["logprobs"]["content"][0]["top_logprobs"]:
        key = t["token"].strip().lower()
        if key in probs:
            probs[key] += math.exp(t["logprob"])
    return probs["yes"] / (probs["yes"] + probs["no"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--dataset", type=Path, default=SHARED_DATA / "squad2_dev" / "dev-v2.0.json")
    ap.add_argument("--index", type=Path, default=Path("indexes/answers-squad2_dev-minilm"))
    ap.add_argument("--llm", action="store_true", help="also score the LLM verifier (a few seconds per question)")
    args = ap.parse_args()

    from eval.answers import load_qa
    from rag.answering.prompt import format_passages
    from rag.config import get_settings
    from rag.index import Index

    report = json.loads(args.report.read_text(encoding="utf-8"))
    records = [r for r in report["records"] if not r["refused"] and r["cited_docs"] and r.get("question")]
    tok = Index.open(args.index).tokenizer
    docs = {d.doc_id: d for d in load_qa(args.dataset)[1]}
    signals: dict[str, list[tuple[bool, float]]] = {}

    def add(name: str, impossible: bool, value: float | None) -> None:
        if value is not None:
            signals.setdefault(name, []).append((impossible, float(value)))

    llm = None
    if args.llm:
        from llama_cpp import Llama

        from rag.models.gguf import resolve_gguf

        s = get_settings().model_copy(update={"llm_model": report.get("model") or get_settings().llm_model})
        llm = Llama(model_path=str(resolve_gguf(s.llm_model)), n_ctx=s.llm_context_tokens, n_threads=s.llm_threads,
                    logits_all=True, verbose=False)
    for r in tqdm(records, desc="signals", unit="q"):
        gate = r.get("gate") or {}
        for key in ("dense_max", "bm25_ratio", "rerank_max"):
            add(key, r["impossible"], gate.get(key))
        doc = docs[r["cited_docs"][0]]
        q_terms = set(tok(r["question"]))
        p_terms = set(tok(" ".join(docs[c].title + " " + docs[c].text for c in r["cited_docs"])))
        add("question_coverage", r["impossible"], len(q_terms & p_terms) / max(1, len(q_terms)))
        add("agreement", r["impossible"], r.get("agreement"))
        if llm is not None:
            add("llm_p_yes", r["impossible"], p_yes(llm, format_passages([(doc.title, doc.text)]), r["question"]))
    lines = [f"# Answerability signals on answered questions: {args.report.name}", "",
             f"{sum(not r['impossible'] for r in records)} answerable, {sum(r['impossible'] for r in records)} "
             "unanswerable questions that the model answered (with a citation).", "",
             "| signal | ROC AUC (answerable vs unanswerable) |", "|---|---:|"]
    result = {}
    for name, rows in signals.items():
        auc = roc_auc([v for imp, v in rows if not imp], [v for imp, v in rows if imp])
        result[name] = auc
        lines.append(f"| {name} | {'–' if auc is None else f'{auc:.3f}'} |")
    if "llm_p_yes" in signals:
        rows = signals["llm_p_yes"]
        lines += ["", "| LLM verifier threshold | answerable kept | unanswerable rejected |", "|---:|---:|---:|"]
        for t in (0.3, 0.5, 0.6, 0.7, 0.8):
            kept = np.mean([v >= t for imp, v in rows if not imp])
            rej = np.mean([v < t for imp, v in rows if imp])
            lines.append(f"| {t} | {100 * kept:.0f} % | {100 * rej:.0f} % |")
    lines += ["", f"Command: `python -m eval.probe_answerability {args.report}{' --llm' if args.llm else ''}`", ""]
    out = args.report.with_name(args.report.stem + "_answerability")
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps({"auc": result, "signals": signals}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
