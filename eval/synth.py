"""Synthetic test sets from a user's own index: the generator writes questions for sampled chunks.

For every sampled chunk the LLM writes one question the chunk answers (with its short answer), in
the chunk's language; for a share of them it also writes a near-miss question that the chunk's
topic invites but the chunk does not answer (marked unanswerable). Weak items are filtered out:
unparseable replies, duplicates and near-duplicates, questions that copy the chunk verbatim,
answers not found in the chunk, and items a judge model rejects ("can the passage answer it?").

The result is a BEIR directory that ``rag eval retrieval`` and ``rag eval answers`` read:
``corpus.jsonl`` (the index's documents, rebuilt from their chunks), ``queries.jsonl`` (with
answerability and the reference answer in ``metadata``), ``qrels/test.tsv`` (answerable questions
-> their source document) and ``generation.json`` (model, sampling parameters, filter counts).
Every finished item is appended to ``items.jsonl`` first, so an interrupted run resumes where
it stopped without repeating a call.
"""

from __future__ import annotations

import difflib
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eval.judge import parse_verdict
from rag.text import detect_lang
from rag.types import Chunk, GenParams

PROMPT_VERSION = "synth-v1"

ASK = {
    "en": ("Passage:\n{text}\n\nWrite one question that this passage answers, and its short answer (a few words) "
           "taken from the passage. Ask it as a curious reader would, in your own words; do not mention 'the passage'. "
           "Write in English. Reply in exactly two lines:\nQuestion: ...\nAnswer: ..."),
    "ko": ("지문:\n{text}\n\n이 지문이 답하는 질문 하나와, 지문에서 찾은 짧은 답(몇 단어)을 쓰세요. 지문의 문장을 그대로 옮기지 말고 "
           "궁금한 독자처럼 자기 말로 물으세요. '지문'이라는 말은 쓰지 마세요. 한국어로 쓰세요. 정확히 두 줄로 답하세요:\n"
           "질문: ...\n답: ..."),
}
NEAR_MISS = {
    "en": ("Passage:\n{text}\n\nWrite one question on the same topic that a reader might ask, but that this passage "
           "does NOT answer: it asks for a fact the passage does not give. Do not mention 'the passage'. Write in "
           "English. Reply in exactly one line:\nQuestion: ..."),
    "ko": ("지문:\n{text}\n\n같은 주제에 대해 독자가 물을 만하지만 이 지문으로는 답할 수 없는 질문 하나를 쓰세요. 지문에 없는 "
           "사실을 묻는 질문이어야 합니다. '지문'이라는 말은 쓰지 마세요. 한국어로 쓰세요. 정확히 한 줄로 답하세요:\n질문: ..."),
}
JUDGE = {
    "en": ("Passage:\n{text}\n\nQuestion: {question}\n\nCan this question be answered from the passage alone? "
           "Reply with one word: yes or no."),
    "ko": ("지문:\n{text}\n\n질문: {question}\n\n이 질문에 지문만으로 답할 수 있습니까? 한 단어로 답하세요: yes 또는 no."),
}
SYSTEM = "You write and check test questions for a search engine. Follow the reply format exactly."

_FIELD = re.compile(r"^\s*[*#>\-\s]*(question|q|질문|answer|a|답|정답)\s*[*]*\s*[:：]\s*[*]*\s*(.+?)\s*$",
                    re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate and how: recorded in ``generation.json`` (a resumed run must match it)."""

    n: int = 50  # chunks to sample (each gives at most one answerable question)
    unanswerable: float = 0.2  # share of sampled chunks that also get a near-miss question
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 13
    min_chars: int = 200  # chunks shorter than this say too little to ask about
    max_passage_chars: int = 1500  # longer chunks are cut (prompt cost)
    max_tokens: int = 96
    judge: bool = True
    prompt_version: str = PROMPT_VERSION


@dataclass(frozen=True)
class Task:
    """One LLM-written item to produce: a chunk and the kind of question wanted."""

    key: str
    kind: str  # "answerable" | "unanswerable"
    chunk_id: int
    doc_id: str
    lang: str
    text: str


# --- sampling ------------------------------------------------------------------------------------

def all_documents(index: Any, page: int = 1000) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    while True:
        batch = index.documents(limit=page, offset=len(docs))
        docs += batch
        if len(batch) < page:
            return docs


def sample_chunks(index: Any, n: int, seed: int = 13, min_chars: int = 200,
                  keep_doc: Callable[[str], bool] | None = None) -> list[tuple[int, Chunk]]:
    """``n`` chunks spread over documents: documents in a seeded order, one chunk each per round
    (a document gives a second chunk only once every document gave one)."""
    rng = random.Random(seed)
    doc_ids = [d["doc_id"] for d in all_documents(index) if keep_doc is None or keep_doc(d["doc_id"])]
    rng.shuffle(doc_ids)
    pools: dict[str, list[tuple[int, Chunk]]] = {}
    chosen: list[tuple[int, Chunk]] = []
    for _round in range(8):
        progressed = False
        for doc_id in doc_ids:
            if len(chosen) >= n:
                return chosen
            if doc_id not in pools:
                ids = sorted(index.chunk_ids_of_docs([doc_id]))
                chunks = index.chunks_by_ids(ids)
                pools[doc_id] = [(i, chunks[i]) for i in ids if len(chunks[i].text) >= min_chars]
                rng.shuffle(pools[doc_id])
            if pools[doc_id]:
                chosen.append(pools[doc_id].pop())
                progressed = True
        if not progressed:
            break
    return chosen


def plan(index: Any, config: SynthConfig, keep_doc: Callable[[str], bool] | None = None) -> list[Task]:
    """The tasks of a run, fixed by the seed: every chunk an answerable task, a seeded share of
    them also an unanswerable one."""
    rng = random.Random(config.seed + 1)
    tasks: list[Task] = []
    for cid, chunk in sample_chunks(index, config.n, config.seed, config.min_chars, keep_doc):
        text = chunk.text[: config.max_passage_chars]
        lang = detect_lang(text)
        tasks.append(Task(f"{cid}:a", "answerable", cid, chunk.doc_id, lang, text))
        if rng.random() < config.unanswerable:
            tasks.append(Task(f"{cid}:u", "unanswerable", cid, chunk.doc_id, lang, text))
    return tasks


# --- parsing and filtering (pure; tested on hand-written replies) --------------------------------

def parse_reply(reply: str) -> tuple[str | None, str | None]:
    """(question, answer) from a 'Question: ... / Answer: ...' reply; None for a missing field."""
    question = answer = None
    for label, value in _FIELD.findall(reply):
        label = label.lower()
        if label in ("question", "q", "질문") and question is None:
            question = value.strip().strip('"“”')
        elif label in ("answer", "a", "답", "정답") and answer is None:
            answer = value.strip().strip('"“”')
    if question is None:  # a bare question without its label
        question = next((line.strip() for line in reply.splitlines() if line.strip().endswith("?")), None)
    return question or None, answer or None


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def char_ngrams(text: str, n: int = 3) -> set[str]:
    t = normalize(text).replace(" ", "")
    return {t[i:i + n] for i in range(max(1, len(t) - n + 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def copies_passage(question: str, passage: str, share: float = 0.7) -> bool:
    """The question's longest common run of characters with the passage covers ``share`` of it:
    a copied sentence with a question mark, which makes retrieval trivially easy."""
    q, p = normalize(question), normalize(passage)
    if not q:
        return True
    m = difflib.SequenceMatcher(None, q, p, autojunk=False).find_longest_match(0, len(q), 0, len(p))
    return m.size >= share * len(q)


def answer_in_passage(answer: str, passage: str, share: float = 0.6) -> bool:
    """Most of the answer's words (character pairs for Korean, whose words take particles) occur
    in the passage: an answer from elsewhere means the model answered from its own memory."""
    words = normalize(answer).split()
    if not words:
        return False
    if detect_lang(answer) == "ko":
        grams, p = char_ngrams(answer, 2), normalize(passage).replace(" ", "")
        return bool(grams) and sum(g in p for g in grams) / len(grams) >= share
    vocab = set(normalize(passage).split())
    return sum(w in vocab for w in words) / len(words) >= share


def check(task: Task, question: str | None, answer: str | None) -> str | None:
    """Why an item is dropped before judging (None: keep it)."""
    if not question:
        return "unparsed"
    words = len(question.split())
    if not (3 <= words <= 40) and not (task.lang == "ko" and 2 <= words <= 30):
        return "length"
    if task.lang == "ko" and detect_lang(question) != "ko":
        return "language"
    if task.lang == "en" and detect_lang(question) != "en":
        return "language"
    if copies_passage(question, task.text):
        return "copies_passage"
    if task.kind == "answerable" and (not answer or not answer_in_passage(answer, task.text)):
        return "answer_not_in_passage"
    return None


class Deduper:
    """Drops exact and near-duplicate questions (character-trigram Jaccard, works for Korean too)."""

    def __init__(self, threshold: float = 0.7) -> None:
        self.threshold = threshold
        self.seen: list[set[str]] = []

    def add(self, question: str) -> bool:
        grams = char_ngrams(question)
        if any(jaccard(grams, s) >= self.threshold for s in self.seen):
            return False
        self.seen.append(grams)
        return True


# --- running ---------------------------------------------------------------------------------------

def complete(generator: Any, prompt: str, params: GenParams) -> str:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    return "".join(generator.stream(messages, params))


def estimate(generator: Any, tasks: Sequence[Task], config: SynthConfig) -> dict[str, int]:
    """LLM calls and tokens a run will spend (prompt tokens counted, output at its cap)."""
    prompt = sum(generator.count_tokens(SYSTEM + (ASK if t.kind == "answerable" else NEAR_MISS)[t.lang]
                                        .format(text=t.text)) for t in tasks)
    calls = len(tasks) * (2 if config.judge else 1)
    judge_prompt = prompt if config.judge else 0
    return {"calls": calls, "prompt_tokens": prompt + judge_prompt,
            "output_tokens": len(tasks) * config.max_tokens + (len(tasks) * 3 if config.judge else 0)}


def make_item(task: Task, generator: Any, judge: Any | None, config: SynthConfig, index_in_plan: int
              ) -> dict[str, Any]:
    """Generate, check and judge one task; the record says whether it was kept and why not."""
    params = GenParams(temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens,
                       seed=config.seed * 1000 + index_in_plan)
    template = ASK if task.kind == "answerable" else NEAR_MISS
    t0 = time.perf_counter()
    reply = complete(generator, template[task.lang].format(text=task.text), params)
    question, answer = parse_reply(reply)
    if task.kind == "unanswerable":
        answer = None
    item: dict[str, Any] = {"key": task.key, "kind": task.kind, "chunk_id": task.chunk_id, "doc_id": task.doc_id,
                            "lang": task.lang, "question": question, "answer": answer, "reply": reply[:500],
                            "dropped": check(task, question, answer), "verdict": None}
    if item["dropped"] is None and judge is not None:
        verdict_reply = complete(judge, JUDGE[task.lang].format(text=task.text, question=question),
                                 GenParams(temperature=0.0, max_tokens=3))
        item["verdict"] = parse_verdict(verdict_reply)
        wanted = task.kind == "answerable"
        if item["verdict"] is None:
            item["dropped"] = "judge_unparsed"
        elif item["verdict"] != wanted:
            item["dropped"] = "judge_rejected"
    item["seconds"] = round(time.perf_counter() - t0, 2)
    return item


def read_items(path: Path) -> dict[str, dict[str, Any]]:
    """Finished items of an earlier run (a torn last line, from a kill mid-write, is ignored)."""
    done: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[item["key"]] = item
    return done


def run(tasks: Sequence[Task], generator: Any, judge: Any | None, config: SynthConfig, out: Path,
        progress: bool = True) -> Iterator[dict[str, Any]]:
    """Yield every task's item, reading finished ones from ``out/items.jsonl`` and appending new ones."""
    from tqdm.auto import tqdm

    path = out / "items.jsonl"
    done = read_items(path)
    out.mkdir(parents=True, exist_ok=True)
    kept = sum(1 for t in tasks if t.key in done and done[t.key]["dropped"] is None)
    bar = tqdm(total=len(tasks), desc="generate", unit="item", disable=not progress, initial=0)
    with open(path, "a", encoding="utf-8") as fh:
        for i, task in enumerate(tasks):
            item = done.get(task.key)
            if item is None:
                item = make_item(task, generator, judge, config, i)
                fh.write(json.dumps(item, ensure_ascii=False) + "\n")
                fh.flush()
                kept += item["dropped"] is None
            bar.update(1)
            bar.set_postfix(kept=kept)
            yield item
    bar.close()


def finalize(items: Sequence[dict[str, Any]], index: Any, out: Path, config: SynthConfig,
             meta: dict[str, Any]) -> dict[str, Any]:
    """Deduplicate, then write the BEIR directory and ``generation.json``; returns the summary."""
    dedupe = Deduper()
    kept: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    for item in items:
        reason = item["dropped"]
        if reason is None and not dedupe.add(item["question"]):
            reason = "duplicate"
        if reason is None:
            kept.append(item)
        else:
            reasons[reason] += 1
    write_corpus(index, out / "corpus.jsonl")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as fh:
        for item in kept:
            meta_q = {"answerable": item["kind"] == "answerable", "answer": item["answer"], "doc_id": item["doc_id"],
                      "chunk_id": item["chunk_id"], "lang": item["lang"], "generated": True}
            fh.write(json.dumps({"_id": f"q{item['key'].replace(':', '-')}", "text": item["question"],
                                 "metadata": meta_q}, ensure_ascii=False) + "\n")
    (out / "qrels").mkdir(exist_ok=True)
    with open(out / "qrels" / "test.tsv", "w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for item in kept:
            if item["kind"] == "answerable":
                fh.write(f"q{item['key'].replace(':', '-')}\t{item['doc_id']}\t1\n")
    by_kind = Counter(i["kind"] for i in items)
    kept_kind = Counter(i["kind"] for i in kept)
    judged = [i for i in items if i["verdict"] is not None and i["kind"] == "answerable"]
    summary = {**meta, "config": asdict(config), "items": len(items), "kept": len(kept),
               "kept_answerable": kept_kind["answerable"], "kept_unanswerable": kept_kind["unanswerable"],
               "generated_answerable": by_kind["answerable"], "generated_unanswerable": by_kind["unanswerable"],
               "judged_answerable": (round(sum(i["verdict"] for i in judged) / len(judged), 4) if judged else None),
               "dropped": dict(reasons.most_common()),
               "languages": dict(Counter(i["lang"] for i in kept)),
               "seconds_per_item": (round(sum(i.get("seconds", 0) for i in items) / len(items), 2) if items else None),
               "distinct_words": distinct_ratio(kept)}
    (out / "generation.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_report(summary, out)
    return summary


def write_report(summary: dict[str, Any], out: Path) -> None:
    """``generation.md`` (what was kept, why the rest was dropped, the settings) and
    ``generation.png`` (kept and dropped items by reason)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = summary["config"]
    judged = summary["judged_answerable"]
    lines = [f"# Generated test set: {summary['kept']} of {summary['items']} items kept", "",
             "| | answerable | unanswerable (near-miss) |", "|---|---:|---:|",
             f"| written | {summary['generated_answerable']} | {summary['generated_unanswerable']} |",
             f"| kept | {summary['kept_answerable']} | {summary['kept_unanswerable']} |", "",
             "| dropped because | items |", "|---|---:|"]
    lines += [f"| {reason} | {n} |" for reason, n in summary["dropped"].items()] or ["| (nothing dropped) | 0 |"]
    lines += ["", f"Judged answerable by the judge: {'–' if judged is None else f'{100 * judged:.0f} %'}; "
              f"distinct words of the kept questions: {summary['distinct_words']}; languages: {summary['languages']}.",
              f"Generator {summary.get('model')}, judge {summary.get('judge')}; temperature {c['temperature']}, "
              f"top_p {c['top_p']}, seed {c['seed']}, {c['n']} chunks, prompts {c['prompt_version']}; "
              f"{summary['seconds_per_item']} s per item.", ""]
    if summary.get("command"):
        lines.append(f"Command: `{summary['command']}`\n")
    (out / "generation.md").write_text("\n".join(lines), encoding="utf-8")
    labels = ["kept"] + list(summary["dropped"])
    values = [summary["kept"]] + list(summary["dropped"].values())
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    bars = ax.barh(labels[::-1], values[::-1], color=["C3"] * (len(values) - 1) + ["C2"])
    ax.bar_label(bars, fontsize=8)
    ax.set_xlabel("items")
    ax.set_title(f"Generated set: {summary['kept']} of {summary['items']} items kept", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "generation.png", dpi=110)
    plt.close(fig)


def distinct_ratio(items: Sequence[dict[str, Any]]) -> float | None:
    """Distinct words over all words of the kept questions: the set's lexical variety (distinct-1)."""
    words = [w for i in items for w in normalize(i["question"]).split()]
    return round(len(set(words)) / len(words), 4) if words else None


def rebuild_text(chunks: Sequence[Chunk]) -> str:
    """A document's text from its chunks' character spans (overlapping spans written once)."""
    out: list[str] = []
    end = 0
    for c in sorted(chunks, key=lambda c: c.start):
        if c.end <= end:
            continue
        skip = max(0, end - c.start)
        if c.start > end and out:
            out.append("\n")
        out.append(c.text[skip:])
        end = c.end
    return "".join(out)


def write_corpus(index: Any, path: Path) -> None:
    """The index's documents as a BEIR corpus, so the set can be re-ingested anywhere."""
    with open(path, "w", encoding="utf-8") as fh:
        for doc in all_documents(index):
            chunks = index.chunks_by_ids(index.chunk_ids_of_docs([doc["doc_id"]])).values()
            fh.write(json.dumps({"_id": doc["doc_id"], "title": doc.get("title") or "",
                                 "text": rebuild_text(list(chunks))}, ensure_ascii=False) + "\n")


def check_resume(out: Path, config: SynthConfig) -> None:
    """A resumed run must use the plan it started with: other settings would mix two sets."""
    marker = out / "plan.json"
    wanted = asdict(config)
    if marker.exists():
        before = json.loads(marker.read_text(encoding="utf-8"))
        if before != wanted:
            diff = {k: (before.get(k), v) for k, v in wanted.items() if before.get(k) != v}
            raise ValueError(f"{out} holds a run with other settings {diff}: use another --out or --fresh")
    else:
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
