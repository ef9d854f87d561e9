"""Calibrate the grounding check on real answers from the calibration parts (never heldout).

Answerable SQuAD 2.0 questions of the ``train`` part (English) and KorQuAD questions of the
``train`` part (Korean) go through the real pipeline (check in ``flag`` mode). Every sentence of an
answer that holds the gold phrase is a *supported* pair with its gold paragraph, and an
*unsupported* pair with a paragraph of the same article that lacks the gold phrase (same topic,
different facts: what a near-topic answer looks like). Per language: ROC AUC of the lexical
signal and of the cross-encoder's score, and the lexical threshold that keeps 90 % of supported
sentences (the setting ``grounding_min_overlap``), with the share of unsupported pairs it rejects.
KorQuAD's articles are indexed in a temporary directory in RAM and nothing derived is stored.

    python -m eval.calibrate_grounding --out eval/results/grounding_calibration.json
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from eval.answers import QAItem, contains_gold, load_qa, select
from eval.common import RESULTS, SHARED_DATA, cpu_info, write_json
from rag.answering.grounding import local_support, passage_windows, sentences_with_citations
from rag.answering.pipeline import AnswerPipeline
from rag.config import Settings
from rag.models.generator import make_generator
from rag.retrieval.factory import build_retriever, load_reranker



def roc_auc(pos: list[float], neg: list[float]) -> float | None:
    """Probability that a supported pair outscores an unsupported one (ties count half)."""
    if not pos or not neg:
        return None
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return round(float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size)), 4)


def pairs_for(pipe: AnswerPipeline, items: list[QAItem], docs: dict[str, Any], lang: str, seed: int
              ) -> list[dict[str, Any]]:
    """(sentence, paragraph, supported) pairs from the answers that hold their gold phrase."""
    tok = pipe.retriever.index.tokenizer
    rng = random.Random(seed)
    by_article: dict[str, list[str]] = {}
    for doc_id in docs:
        by_article.setdefault(doc_id.rsplit("-", 1)[0], []).append(doc_id)
    out = []
    for item in tqdm(items, desc=f"answers {lang}", unit="q"):
        a = pipe.answer(item.question)
        if a.refused or not any(contains_gold(a.text, g, lang) for g in item.answers):
            continue
        others = [d for d in by_article[item.article] if d != item.gold_doc
                  and not any(g in docs[d].text for g in item.answers)]
        q_terms = set(tok(item.question))
        for sentence, _ in sentences_with_citations(a.text):
            s_terms = set(tok(sentence))
            terms, subject = s_terms - q_terms, s_terms & q_terms
            if not terms:
                continue
            negatives = rng.sample(others, min(2, len(others)))
            for doc_id, label in [(item.gold_doc, True)] + [(d, False) for d in negatives]:
                out.append({"lang": lang, "sentence": sentence, "doc": doc_id, "supported": label,
                            "lexical": local_support(terms, subject, passage_windows(docs[doc_id].text, tok)),
                            "text": docs[doc_id].text})
    return out


def add_learned(pairs: list[dict[str, Any]], reranker) -> None:
    for p in tqdm(pairs, desc="cross-encoder", unit="pair"):
        p["learned"] = float(reranker.score(p["sentence"], [p["text"]])[0])


def summarize(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for lang in sorted({p["lang"] for p in pairs}):
        ps = [p for p in pairs if p["lang"] == lang]
        pos = [p for p in ps if p["supported"]]
        neg = [p for p in ps if not p["supported"]]
        lex_pos = sorted(p["lexical"] for p in pos)
        tau = lex_pos[int(0.10 * len(lex_pos))] if lex_pos else None  # keeps 90 % of supported sentences
        rows.append({"lang": lang, "supported_pairs": len(pos), "unsupported_pairs": len(neg),
                     "auc_lexical": roc_auc([p["lexical"] for p in pos], [p["lexical"] for p in neg]),
                     "auc_learned": roc_auc([p["learned"] for p in pos], [p["learned"] for p in neg]),
                     "lexical_threshold_90": round(tau, 4) if tau is not None else None,
                     "rejected_at_threshold": round(sum(p["lexical"] < tau for p in neg) / len(neg), 4)
                     if neg and tau is not None else None,
                     "rejected_at_0.5": round(sum(p["lexical"] < 0.5 for p in neg) / len(neg), 4) if neg else None,
                     "kept_at_0.5": round(sum(p["lexical"] >= 0.5 for p in pos) / len(pos), 4) if pos else None})
    return rows


def write_report(result: dict[str, Any], out: Path) -> None:
    lines = ["# Grounding check calibration (train parts of SQuAD 2.0 and KorQuAD)", "",
             f"CPU: {result['cpu']}. Supported pairs: an answer sentence (answer holding the gold phrase) with its "
             "gold paragraph; unsupported: the same sentence with another paragraph of the article lacking the gold "
             "phrase.", "",
             "| lang | supported / unsupported pairs | ROC AUC lexical | ROC AUC cross-encoder | lexical threshold "
             "keeping 90 % | unsupported rejected there | at 0.5: supported kept / unsupported rejected |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["summary"]:
        lines.append(f"| {r['lang']} | {r['supported_pairs']} / {r['unsupported_pairs']} | {r['auc_lexical']} | "
                     f"{r['auc_learned']} | {r['lexical_threshold_90']} | {r['rejected_at_threshold']} | "
                     f"{r['kept_at_0.5']} / {r['rejected_at_0.5']} |")
    lines += ["", f"Command: `{result['command']}`"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    from ingest.pipeline import ingest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--squad", type=Path, default=SHARED_DATA / "squad2_dev" / "dev-v2.0.json")
    ap.add_argument("--korquad", type=Path, default=SHARED_DATA / "korquad1_dev" / "KorQuAD_v1.0_dev.json")
    ap.add_argument("--limit", type=int, default=40, help="questions per language")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=RESULTS / "grounding_calibration.json")
    args = ap.parse_args()
    settings = Settings().model_copy(update={"grounding": "flag"})
    gen = make_generator(settings)
    gen.load()
    pairs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        for path, lang in ((args.squad, "en"), (args.korquad, "ko")):
            if not path.exists():
                continue
            _, docs, items = load_qa(path)
            chosen = select([q for q in items if not q.impossible], "train", args.limit, args.seed)
            articles = {q.article for q in chosen}
            docs = {d.doc_id: d for d in docs if d.doc_id.rsplit("-", 1)[0] in articles}
            index = Path(tmp) / lang
            ingest([], index, settings, documents=list(docs.values()), progress=False)
            pipe = AnswerPipeline(build_retriever(settings, index), gen, settings)
            pairs += pairs_for(pipe, chosen, docs, lang, args.seed)
    add_learned(pairs, load_reranker(settings)[0])
    result = {"cpu": cpu_info(), "model": settings.llm_model, "summary": summarize(pairs),
              "command": "python -m eval.calibrate_grounding"}
    # Scores and labels only: no sentence or paragraph text (KorQuAD's licence forbids derived files).
    result["pairs"] = [{k: p[k] for k in ("lang", "doc", "supported", "lexical", "learned")} for p in pairs]
    write_json(args.out, result)
    write_report(result, args.out)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
