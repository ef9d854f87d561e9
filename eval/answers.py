"""Answer-quality evaluation: every question asked end to end through the real /ask pipeline.

Input is a SQuAD-format file (SQuAD 2.0 with unanswerable questions, or KorQuAD 1.0); its
paragraphs become the corpus and retrieval runs over all of them (never the gold paragraph
alone). Scoring follows the official scripts: SQuAD's normalisation (lower case, no
punctuation, no articles) with token F1, and KorQuAD's character-level F1 for Korean. A
generated sentence rarely equals a gold span, so "contains the gold answer" is reported too.

KorQuAD's licence forbids storing derived files: for it the report keeps aggregate figures and
per-question numbers only, never question or answer text.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import string
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eval.retrieval import percentile as _percentile
from rag.datasets import iter_squad, part_of
from rag.types import Document

# Targets from the issue: shown in the report and the plot.
TARGETS = {"unanswerable_refused": (">=", 0.70), "false_refusal": ("<=", 0.15),
           "contains_gold": (">=", 0.70), "citation_accuracy": (">=", 0.90)}


@dataclass(frozen=True)
class QAItem:
    qid: str
    question: str
    answers: tuple[str, ...]
    impossible: bool
    gold_doc: str
    article: str


def doc_prefix(path: Path) -> str:
    """Document ids match the BEIR views: ``squad2dev-AA-PPP`` and ``korquad-AA-PPP``."""
    stem = path.stem.lower()
    if "korquad" in stem:
        return "korquad"
    if path.parent.name == "squad2_dev":
        return "squad2dev"
    return re.sub(r"[^a-z0-9]+", "", stem) or "qa"


def load_qa(path: Path) -> tuple[str, list[Document], list[QAItem]]:
    """(data set name, paragraphs as documents, questions) from a SQuAD v1/v2-format JSON file,
    or from a BEIR directory whose queries carry answers (``rag eval generate`` writes one)."""
    path = Path(path)
    if path.is_dir():
        return load_beir_qa(path)
    prefix = doc_prefix(path)
    docs: dict[str, Document] = {}
    items: list[QAItem] = []
    for title, pid, context, qa in iter_squad(path):
        doc_id = f"{prefix}-{pid}"
        if doc_id not in docs:
            docs[doc_id] = Document(doc_id=doc_id, text=context, title=title.replace("_", " "),
                                    source=f"{prefix}:{pid}", format="squad")
        answers = tuple(dict.fromkeys(a["text"] for a in qa.get("answers", [])))
        items.append(QAItem(str(qa["id"]), qa["question"], answers, bool(qa.get("is_impossible", False)),
                            doc_id, doc_id.rsplit("-", 1)[0]))
    name = path.parent.name if path.parent.name not in ("", ".") else path.stem
    return name, list(docs.values()), items


def load_beir_qa(directory: Path) -> tuple[str, list[Document], list[QAItem]]:
    """A BEIR directory whose queries' ``metadata`` give ``answerable``, ``answer`` and ``doc_id``."""
    from rag.datasets import read_jsonl

    docs = [Document(doc_id=str(d["_id"]), text=d["text"], title=d.get("title", ""), source=f"beir:{d['_id']}",
                     format="beir") for d in read_jsonl(directory / "corpus.jsonl")]
    items = []
    for q in read_jsonl(directory / "queries.jsonl"):
        meta = q.get("metadata") or {}
        if "answerable" not in meta:
            raise ValueError(f"{directory}/queries.jsonl: query {q['_id']} has no metadata.answerable "
                             "(answer evaluation needs answers: generate the set with 'rag eval generate')")
        answer = meta.get("answer")
        items.append(QAItem(str(q["_id"]), q["text"], (answer,) if answer else (), not meta["answerable"],
                            str(meta.get("doc_id", "")), str(meta.get("doc_id", ""))))
    return directory.name, docs, items


def select(items: Sequence[QAItem], part: str = "heldout", limit: int | None = None, seed: int = 13
           ) -> list[QAItem]:
    """Questions of one part of the fixed article split (as the retrieval eval), sampled by seed."""
    chosen = [q for q in items if part == "all" or part_of("article:" + q.article) == part]
    if limit and len(chosen) > limit:
        chosen = random.Random(seed).sample(chosen, limit)
    return chosen


# --- scoring (pure functions; hand-checked in tests) -------------------------------------------

_CITATION = re.compile(r"\s*\[\d+\]")


def strip_citations(text: str) -> str:
    return _CITATION.sub("", text).strip()


def normalize_answer(text: str, lang: str = "en") -> str:
    """SQuAD's official normalisation; for Korean, KorQuAD's (no English articles to drop)."""
    text = text.lower()
    if lang == "ko":
        text = "".join(" " if unicodedata.category(ch).startswith("P") or ch in "《》〈〉「」『』'\"`" else ch
                       for ch in text)
    else:
        text = "".join(ch for ch in text if ch not in set(string.punctuation))
        text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _tokens(text: str, lang: str) -> list[str]:
    norm = normalize_answer(text, lang)
    # KorQuAD 1.0's official F1 counts characters (Korean words carry attached particles).
    return [c for c in norm if not c.isspace()] if lang == "ko" else norm.split()


def f1_score(prediction: str, gold: str, lang: str = "en") -> float:
    pred, ref = _tokens(prediction, lang), _tokens(gold, lang)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if not pred or not ref or same == 0:
        return float(pred == ref)
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str, lang: str = "en") -> float:
    return float(normalize_answer(prediction, lang) == normalize_answer(gold, lang))


def contains_gold(prediction: str, gold: str, lang: str = "en") -> bool:
    """The normalised gold span occurs in the normalised answer (spaces ignored for Korean)."""
    p, g = normalize_answer(prediction, lang), normalize_answer(gold, lang)
    if lang == "ko":
        p, g = p.replace(" ", ""), g.replace(" ", "")
    if not g:
        return False
    return re.search(r"(?<!\w)" + re.escape(g) + r"(?!\w)", p) is not None if lang != "ko" else g in p


def best_over_golds(fn: Callable[[str, str, str], float], prediction: str, golds: Iterable[str], lang: str) -> float:
    return max((float(fn(prediction, g, lang)) for g in golds), default=0.0)


def rouge_l(prediction: str, golds: Sequence[str], lang: str = "en") -> float:
    """ROUGE-L F (rouge-score); Korean is scored on characters (its default tokenizer drops Hangul)."""
    from rouge_score import rouge_scorer

    class _Chars:
        def tokenize(self, text: str) -> list[str]:
            return _tokens(text, "ko")

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=lang != "ko",
                                      tokenizer=_Chars() if lang == "ko" else None)
    return max((scorer.score(g, prediction)["rougeL"].fmeasure for g in golds), default=0.0)


def corpus_bleu(predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str = "en") -> float:
    """sacrebleu corpus BLEU (0-100) with every gold answer as a reference; characters for Korean."""
    import sacrebleu

    if not predictions:
        return 0.0
    width = max(len(r) for r in references)
    refs = [[r[i] if i < len(r) else r[0] for r in references] for i in range(width)]
    return sacrebleu.corpus_bleu(list(predictions), refs, tokenize="char" if lang == "ko" else "13a").score


def percentile(values: Sequence[float], q: float) -> float | None:
    """As the retrieval report's percentile, but None (not 0) when nothing was measured."""
    return _percentile(list(values), q) if values else None


@dataclass
class Record:
    """One question's outcome (texts are left out for data sets that forbid derived files)."""

    qid: str
    impossible: bool
    refused: bool
    refused_by: str | None  # "gate" | "model" | None
    gold_in_context: bool
    cited_docs: list[str]
    gold_doc: str
    em: float = 0.0
    f1: float = 0.0
    contains: bool = False
    rouge_l: float = 0.0
    ttft_ms: float | None = None
    generate_ms: float | None = None
    total_ms: float | None = None
    tokens: int = 0
    prompt_tokens: int = 0  # what the LLM evaluated before its first token (0: not called)
    gate: dict[str, float | None] = field(default_factory=dict)
    agreement: float | None = None  # self-consistency (RAG_CONSISTENCY_SAMPLES) of an answer the model gave
    question: str | None = None
    samples: list[str] | None = None
    answer: str | None = None
    golds: list[str] | None = None
    # Grounding check (a run with RAG_GROUNDING=flag records what enforce would do, the answer unchanged):
    sentences: int = 0  # checked sentences of the answer
    unsupported: int = 0  # of them, stated by no passage
    cites_supported: int = 0  # (sentence, cited passage) pairs where the passage states the sentence
    cites_total: int = 0
    grounding_refuses: bool = False  # enforce would refuse: nothing of substance is supported
    grounding_ms: float | None = None
    # LLM-as-a-judge verdicts per judge model (eval.judge): faithful, correct, refusal_right, seconds
    judged: dict[str, dict[str, Any]] = field(default_factory=dict)


def with_rerank_gate(records: Sequence[Record], threshold: float) -> list[Record]:
    """The records as they would be with ``gate_rerank = threshold``: a question whose best
    cross-encoder score (recorded in ``gate``) is below it is refused by the gate instead.

    Exact for an eval run made with the gate off (greedy decoding: every other answer is
    unchanged), so one LLM run prices every threshold (``python -m eval.sweep_rerank_gate``)."""
    return refuse_below(records, lambda r: (r.gate or {}).get("rerank_max"), threshold, "gate")


def with_min_agreement(records: Sequence[Record], threshold: float) -> list[Record]:
    """The records as they would be with ``consistency_min_agreement = threshold``: an answer whose
    recorded self-consistency is below it is refused instead (exact for a run made at 0: the
    greedy answer and the samples do not depend on the threshold)."""
    return refuse_below(records, lambda r: r.agreement, threshold, "model")


def refuse_below(records: Sequence[Record], score: Callable[[Record], float | None], threshold: float,
                 by: str) -> list[Record]:
    """``records`` with every not-yet-refused question whose ``score`` is below ``threshold`` refused."""
    out = []
    for r in records:
        value = score(r)
        if not r.refused and value is not None and value < threshold:
            r = Record(r.qid, r.impossible, True, by, r.gold_in_context, [], r.gold_doc, gate=r.gate,
                       agreement=r.agreement, question=r.question, golds=r.golds, samples=r.samples)
        out.append(r)
    return out


def with_grounding_enforced(records: Sequence[Record]) -> list[Record]:
    """The records as enforce mode would leave them (exact for a run in flag mode: the model's answer
    does not depend on the check): an answer with nothing of substance supported becomes a refusal."""
    return refuse_below(records, lambda r: 0.0 if r.grounding_refuses else None, 0.5, "grounding")


def grounding_summary(records: Sequence[Record]) -> dict[str, Any]:
    """What the grounding check saw: answers flagged, what enforce changes, citation accuracy with a
    citation counted correct only when its passage states its sentence."""
    answered = [r for r in records if not r.refused and r.sentences]
    if not answered:
        return {}
    enforced = summarize(with_grounding_enforced(records), [])
    pairs = sum(r.cites_total for r in answered)
    times = [r.grounding_ms for r in answered if r.grounding_ms is not None]
    totals = [r.total_ms for r in answered if r.total_ms]
    return {"answers_checked": len(answered),
            "answers_flagged": round(sum(r.unsupported > 0 for r in answered) / len(answered), 4),
            "enforce_refuses": sum(r.grounding_refuses for r in answered),
            "citation_accuracy_supported": round(sum(r.cites_supported for r in answered) / pairs, 4) if pairs else None,
            "enforce": {k: enforced[k] for k in ("false_refusal", "unanswerable_refused", "contains_gold",
                                                 "citation_accuracy")},
            "check_ms_p50": round(statistics.median(times), 2) if times else None,
            "check_share_of_total": round(sum(times) / sum(totals), 4) if times and totals else None}


def summarize(records: Sequence[Record], predictions_for_bleu: Sequence[tuple[str, Sequence[str]]],
              lang: str = "en") -> dict[str, Any]:
    """Aggregate figures (pure: every rate is a plain count ratio, defined on its own population)."""
    ans = [r for r in records if not r.impossible]
    una = [r for r in records if r.impossible]
    answered = [r for r in ans if not r.refused]
    refused = [r for r in records if r.refused]
    cited = [r for r in answered if r.cited_docs]

    def rate(num: int, den: int) -> float | None:
        return round(num / den, 4) if den else None

    ttft = [r.ttft_ms for r in records if r.ttft_ms is not None]
    speeds = [(r.tokens - 1) / ((r.generate_ms - r.ttft_ms) / 1000) for r in records
              if r.tokens > 1 and r.generate_ms and r.ttft_ms is not None and r.generate_ms > r.ttft_ms]
    n_cites = sum(len(r.cited_docs) for r in cited)
    return {
        "questions": len(records), "answerable": len(ans), "unanswerable": len(una),
        "exact_match": rate(sum(r.em for r in answered), len(answered)),
        "f1": rate(sum(r.f1 for r in answered), len(answered)),
        "exact_match_all_answerable": rate(sum(r.em for r in ans), len(ans)),
        "f1_all_answerable": rate(sum(r.f1 for r in ans), len(ans)),
        "contains_gold": rate(sum(r.contains for r in answered), len(answered)),
        "rouge_l": rate(sum(r.rouge_l for r in answered), len(answered)),
        "bleu": round(corpus_bleu([p for p, _ in predictions_for_bleu], [g for _, g in predictions_for_bleu], lang), 2)
        if predictions_for_bleu else None,
        "unanswerable_refused": rate(sum(r.refused for r in una), len(una)),
        "refusal_precision": rate(sum(r.impossible for r in refused), len(refused)),
        "refusal_recall": rate(sum(r.refused for r in una), len(una)),
        "false_refusal": rate(sum(r.refused for r in ans), len(ans)),
        "refused_by_gate": sum(r.refused_by == "gate" for r in records),
        "refused_by_model": sum(r.refused_by == "model" for r in records),
        "citation_accuracy": rate(sum(r.gold_doc in r.cited_docs for r in cited), len(cited)),
        "citation_precision": rate(sum(d == r.gold_doc for r in cited for d in r.cited_docs), n_cites),
        "answered_with_citation": rate(len(cited), len(answered)),
        "gold_in_context": rate(sum(r.gold_in_context for r in ans), len(ans)),
        "ttft_ms": {"p50": percentile(ttft, 0.5), "p95": percentile(ttft, 0.95)},
        "tokens_per_s": {"p50": round(statistics.median(speeds), 2) if speeds else None,
                         "p95": round(percentile(speeds, 0.95), 2) if speeds else None},
        "total_ms": {"p50": percentile([r.total_ms for r in records if r.total_ms], 0.5),
                     "p95": percentile([r.total_ms for r in records if r.total_ms], 0.95)},
    }


def ask_all(pipeline: Any, items: Sequence[QAItem], keep_text: bool, progress: bool = True,
            judges: Sequence[Any] = ()) -> tuple[list[Record], list[tuple[str, Sequence[str]]], str]:
    """Ask every question through ``pipeline`` (an :class:`rag.answering.pipeline.AnswerPipeline`);
    each of ``judges`` (Generators) grades every answer (see :mod:`eval.judge`)."""
    from tqdm.auto import tqdm

    from rag.text import detect_lang

    records: list[Record] = []
    bleu_pairs: list[tuple[str, Sequence[str]]] = []
    lang = "en"
    bar = tqdm(items, desc="answers", unit="q", disable=not progress)
    for item in bar:
        q_lang = detect_lang(item.question)
        lang = q_lang
        prep = pipeline.prepare(item.question)
        answer = None
        for kind, value in pipeline.stream(item.question, prepared=prep):
            if kind == "answer":
                answer = value
        assert answer is not None
        t = answer.timings_ms
        rec = Record(item.qid, item.impossible, answer.refused,
                     None if not answer.refused else ("gate" if not prep.gate.passed else "model"),
                     any(h.chunk.doc_id == item.gold_doc for h in prep.hits),
                     list(dict.fromkeys(c.hit.chunk.doc_id for c in answer.citations)), item.gold_doc,
                     ttft_ms=t.get("ttft"), generate_ms=t.get("generate") or None, total_ms=t.get("total"),
                     tokens=answer.tokens, gate={k: (round(v, 4) if v is not None else None)
                                                 for k, v in prep.gate.signals.items()})
        rec.agreement = answer.agreement
        rec.prompt_tokens = answer.prompt_tokens
        if answer.grounding:
            record_grounding(rec, answer)
        if not item.impossible and not answer.refused:
            text = strip_citations(answer.text)
            rec.em = best_over_golds(exact_match, text, item.answers, q_lang)
            rec.f1 = best_over_golds(f1_score, text, item.answers, q_lang)
            rec.contains = any(contains_gold(text, g, q_lang) for g in item.answers)
            rec.rouge_l = rouge_l(text, item.answers, q_lang)
            bleu_pairs.append((text, item.answers))
        for judge in judges:
            rec.judged[judge.name] = judge_record(judge, item, prep, answer, pipeline.settings.context_passages)
        if keep_text:
            rec.question, rec.answer, rec.golds = item.question, answer.text, list(item.answers)
            rec.samples = list(answer.samples) or None
        records.append(rec)
        done = [r for r in records if not r.impossible and not r.refused]
        bar.set_postfix(refused=sum(r.refused for r in records),
                        contains=f"{sum(r.contains for r in done) / max(1, len(done)):.2f}")
    return records, bleu_pairs, lang


def judge_record(judge: Any, item: QAItem, prep: Any, answer: Any, passages: int) -> dict[str, Any]:
    """One judge's verdicts on one answer, given the passages the answering model saw."""
    from eval.judge import judge_answer

    shown = [(i + 1, h.chunk.text) for i, h in enumerate(prep.hits[:passages])] if prep.gate.passed else []
    refs = () if item.impossible else item.answers
    v = judge_answer(judge, item.question, refs, shown, answer.text)
    return {"faithful": v.faithful, "correct": v.correct, "refusal_right": v.refusal_right, "seconds": v.seconds,
            "raw": v.raw if not v.parsed else None}


def judge_summary(records: Sequence[Record]) -> dict[str, Any]:
    """Per judge: verdict rates, unparsed replies, and agreement with the gold-based metrics
    (correct vs contains-gold on answered answerable questions; refusal_right vs refused-exactly-
    when-unanswerable on all questions)."""
    from eval.judge import RUBRIC_VERSION, agreement

    out: dict[str, Any] = {}
    for name in sorted({n for r in records for n in r.judged}):
        rows = [(r, r.judged[name]) for r in records if name in r.judged]
        answered = [(r, j) for r, j in rows if not r.refused and not r.impossible]
        out[name] = {
            "rubric": RUBRIC_VERSION, "judged": len(rows),
            "unparsed": sum(any(j[k] is None for k in ("faithful", "correct", "refusal_right")) for _, j in rows),
            "faithful": _rate([j["faithful"] for r, j in rows if not r.refused]),
            "correct": _rate([j["correct"] for _, j in answered]),
            "refusal_right": _rate([j["refusal_right"] for _, j in rows]),
            "vs_contains_gold": agreement([j["correct"] for _, j in answered], [r.contains for r, _ in answered]),
            "vs_refusal_gold": agreement([j["refusal_right"] for _, j in rows],
                                         [r.refused == r.impossible for r, _ in rows]),
            "seconds_p50": percentile([j["seconds"] for _, j in rows], 0.5),
        }
    return out


def judge_table(judges: dict[str, Any], fmt: Callable[[Any], str]) -> list[str]:
    """The judges' verdicts and their agreement with the gold-based metrics, as Markdown lines."""
    if not judges:
        return []
    lines = ["", "LLM judges (rubric " + next(iter(judges.values()))["rubric"] + "): verdict rates, and agreement with "
             "the gold-based metrics (accuracy, Cohen's κ)", "",
             "| judge | judged | unparsed | faithful | correct | refusal right | correct vs contains-gold: acc / κ | "
             "refusal right vs gold: acc / κ | s per answer (p50) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, j in judges.items():
        a, r = j["vs_contains_gold"], j["vs_refusal_gold"]
        kappa = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(f"| {name} | {j['judged']} | {j['unparsed']} | {fmt(j['faithful'])} | {fmt(j['correct'])} | "
                     f"{fmt(j['refusal_right'])} | {fmt(a['accuracy'])} / {kappa(a['kappa'])} (n={a['n']}) | "
                     f"{fmt(r['accuracy'])} / {kappa(r['kappa'])} (n={r['n']}) | {j['seconds_p50']} |")
    return lines


def _rate(values: Sequence[bool | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 4) if known else None


def record_grounding(rec: Record, answer: Any) -> None:
    from rag.answering.grounding import has_substance

    checks = answer.grounding
    rec.sentences = len(checks)
    rec.unsupported = sum(not g.supported for g in checks)
    rec.cites_total = sum(len(g.cited) for g in checks)
    rec.cites_supported = sum(len(g.cited) for g in checks if g.supported)
    rec.grounding_refuses = not answer.refused and not has_substance(checks)
    rec.grounding_ms = answer.timings_ms.get("grounding")


def write_report(result: dict[str, Any], out: Path) -> None:
    """FILE.json (with per-question records), FILE.md (table) and FILE.png (rates vs targets)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    m = result["metrics"]

    def fmt(v: Any, pct: bool = True) -> str:
        return "–" if v is None else (f"{100 * v:.1f} %" if pct else f"{v:g}")

    rows = [("questions (answerable / unanswerable)", f"{m['questions']} ({m['answerable']} / {m['unanswerable']})"),
            ("unanswerable refused (target ≥ 70 %)", fmt(m["unanswerable_refused"])),
            ("answerable falsely refused (target ≤ 15 %)", fmt(m["false_refusal"])),
            ("contains gold answer, answered (target ≥ 70 %)", fmt(m["contains_gold"])),
            ("citation accuracy (target ≥ 90 %)", fmt(m["citation_accuracy"])),
            ("citation precision (cited passages that are gold)", fmt(m["citation_precision"])),
            ("answered with ≥ 1 citation", fmt(m["answered_with_citation"])),
            ("gold paragraph in the LLM's context", fmt(m["gold_in_context"])),
            ("EM / F1 (answered)", f"{fmt(m['exact_match'])} / {fmt(m['f1'])}"),
            ("EM / F1 (all answerable, refusals score 0)",
             f"{fmt(m['exact_match_all_answerable'])} / {fmt(m['f1_all_answerable'])}"),
            ("ROUGE-L / BLEU (answered)", f"{fmt(m['rouge_l'])} / {fmt(m['bleu'], False)}"),
            ("refusal precision / recall", f"{fmt(m['refusal_precision'])} / {fmt(m['refusal_recall'])}"),
            ("refused by the gate / by the model", f"{m['refused_by_gate']} / {m['refused_by_model']}"),
            ("TTFT p50 / p95 (ms)", f"{fmt(m['ttft_ms']['p50'], False)} / {fmt(m['ttft_ms']['p95'], False)}"),
            ("tokens/s p50 / p95", f"{fmt(m['tokens_per_s']['p50'], False)} / {fmt(m['tokens_per_s']['p95'], False)}"),
            ("total per question p50 / p95 (ms)",
             f"{fmt(m['total_ms']['p50'], False)} / {fmt(m['total_ms']['p95'], False)}")]
    g = m.get("grounding") or {}
    if g:
        e = g["enforce"]
        rows += [("grounding: answers with an unsupported sentence", fmt(g["answers_flagged"])),
                 ("grounding: citation accuracy (its passage states its sentence)", fmt(g["citation_accuracy_supported"])),
                 ("grounding enforced: answerable falsely refused", fmt(e["false_refusal"])),
                 ("grounding enforced: unanswerable refused", fmt(e["unanswerable_refused"])),
                 ("grounding enforced: contains gold, answered", fmt(e["contains_gold"])),
                 ("grounding: check time p50 (ms) / share of answer time",
                  f"{fmt(g['check_ms_p50'], False)} / {fmt(g['check_share_of_total'])}")]
    lines = [f"# Answers: {result['dataset']} ({result['part']}, {m['questions']} questions) with {result['model']}",
             "", "| metric | value |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in rows]
    lines += judge_table(m.get("judges") or {}, fmt)
    lines += ["", f"Index: {result['index']['embedder']}, {result['index']['chunks']} chunks; reranker: "
              f"{result['reranker']}; {result['seconds']} s. Command: `{result['command']}`", ""]
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")

    names = ["unanswerable_refused", "false_refusal", "contains_gold", "citation_accuracy", "f1", "rouge_l"]
    labels = ["unanswerable\nrefused", "answerable\nfalsely refused", "contains\ngold", "citation\naccuracy",
              "F1", "ROUGE-L"]
    vals = [m[n] or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(8, 4))
    bars = ax.bar(range(len(vals)), vals, color=["C0", "C3", "C2", "C1", "C4", "C5"])
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    for i, n in enumerate(names):
        if n in TARGETS:
            ax.hlines(TARGETS[n][1], i - 0.4, i + 0.4, colors="black", linestyles="dashed")
    ax.set_xticks(range(len(vals)), labels, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{result['dataset']} ({m['questions']} q) — {result['model']} (dashed: targets)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    plt.close(fig)


def run(pipeline: Any, name: str, items: Sequence[QAItem], keep_text: bool, progress: bool = True,
        judges: Sequence[Any] = ()) -> dict[str, Any]:
    t = time.perf_counter()
    records, bleu_pairs, lang = ask_all(pipeline, items, keep_text, progress, judges)
    metrics = summarize(records, bleu_pairs, lang)
    metrics["grounding"] = grounding_summary(records)
    if judges:
        metrics["judges"] = judge_summary(records)
    return {"dataset": name, "lang": lang, "metrics": metrics,
            "records": [asdict(r) for r in records], "seconds": round(time.perf_counter() - t, 1)}
