"""Conversational evaluation (``rag eval chat``): multi-turn conversations through the real pipeline.

A conversation set is JSON Lines (``eval/data/conversations.md`` documents the format): each turn
has the question as typed, the same question written out in full (``standalone``), the document
that answers it (or null: unanswerable) and a short gold phrase. For every rewrite mode (``never``:
search the follow-up as typed; ``auto``: rewrite follow-ups that lean on the conversation) the
conversation is replayed turn by turn, the assistant's earlier turns being the service's own answers
(or, without ``answers``, the gold phrases). Reported over follow-up turns: Recall@5 of the needed
document, and with answers: answered correctly (contains the gold phrase), false refusals,
unanswerable refused, citation accuracy, TTFT and the time the rewrite adds. The standalone
questions give the ceiling Recall@5.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from eval.answers import contains_gold
from rag.datasets import read_jsonl
from rag.types import Turn

K = 5


@dataclass(frozen=True)
class ChatTurn:
    question: str
    standalone: str
    doc: str | None
    answer: str | None
    kind: str


@dataclass(frozen=True)
class Conversation:
    id: str
    lang: str
    corpus: str
    turns: tuple[ChatTurn, ...]


@dataclass
class TurnRecord:
    conversation: str
    turn: int
    lang: str
    kind: str
    mode: str
    query: str
    rewritten: bool
    found: bool | None  # needed document in the top K (None: unanswerable)
    refused: bool | None = None
    correct: bool | None = None
    cited_right: bool | None = None
    rewrite_ms: float = 0.0
    ttft_ms: float | None = None
    total_ms: float | None = None


def load_conversations(path: Path) -> list[Conversation]:
    convs = []
    for row in read_jsonl(Path(path)):
        turns = tuple(ChatTurn(t["question"], t.get("standalone") or t["question"], t.get("doc"), t.get("answer"),
                               t.get("kind", "first" if i == 0 else "pronoun")) for i, t in enumerate(row["turns"]))
        convs.append(Conversation(row["id"], row.get("lang", "en"), row.get("corpus", "bundled"), turns))
    return convs


def _found(hits, doc: str | None) -> bool | None:
    return None if doc is None else any(h.chunk.doc_id == doc for h in hits[:K])


def replay(pipeline: Any, conv: Conversation, mode: str, answers: bool) -> list[TurnRecord]:
    """One conversation in one rewrite mode; the pipeline's settings decide everything else."""
    pipeline.settings = pipeline.settings.model_copy(update={"rewrite": mode})
    history: list[Turn] = []
    records = []
    for i, turn in enumerate(conv.turns):
        prep = pipeline.prepare(turn.question, history=history)
        rec = TurnRecord(conv.id, i, conv.lang, turn.kind, mode, prep.query, prep.rewritten,
                         _found(prep.result.hits, turn.doc), rewrite_ms=prep.timings["rewrite"])
        reply = turn.answer or ""
        if answers:
            answer = next(v for k, v in pipeline.stream(turn.question, prepared=prep) if k == "answer")
            reply = answer.text
            rec.refused = answer.refused
            rec.ttft_ms = answer.timings_ms.get("ttft")
            rec.total_ms = answer.timings_ms.get("total")
            if turn.doc is not None:
                rec.correct = not answer.refused and contains_gold(answer.text, turn.answer or "", conv.lang)
                rec.cited_right = None if answer.refused else any(c.hit.chunk.doc_id == turn.doc
                                                                  for c in answer.citations)
        records.append(rec)
        history += [Turn("user", turn.question), Turn("assistant", reply)]
    return records


def standalone_recall(retriever: Any, convs: Sequence[Conversation]) -> list[bool]:
    """Recall@K of the follow-ups written out in full: the ceiling for any rewrite."""
    return [_found(retriever.search(t.standalone, k=K).hits, t.doc)
            for c in convs for t in c.turns[1:] if t.doc is not None]


def _rate(values: Sequence[bool | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(sum(vals) / len(vals), 4) if vals else None


def _p50(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 1) if vals else None


def summarize(records: Sequence[TurnRecord]) -> dict[str, Any]:
    follow = [r for r in records if r.turn > 0]
    answerable = [r for r in follow if r.found is not None]
    unanswerable = [r for r in follow if r.found is None]
    rewritten = [r for r in follow if r.rewritten]
    return {
        "follow_up_turns": len(follow), "answerable": len(answerable), "unanswerable": len(unanswerable),
        "recall_at_5": _rate([r.found for r in answerable]),
        "first_turn_recall_at_5": _rate([r.found for r in records if r.turn == 0]),
        "rewritten_share": _rate([r.rewritten for r in follow]),
        "answered_correctly": _rate([r.correct for r in answerable]),
        "false_refusal": _rate([r.refused for r in answerable]),
        "unanswerable_refused": _rate([r.refused for r in unanswerable]),
        "citation_accuracy": _rate([r.cited_right for r in answerable]),
        "ttft_ms_p50": _p50([r.ttft_ms for r in follow]),
        "total_ms_p50": _p50([r.total_ms for r in follow]),
        "rewrite_ms_p50": _p50([r.rewrite_ms for r in rewritten]),
    }


def run(pipelines: dict[str, Any], convs: Sequence[Conversation], modes: Sequence[str], answers: bool,
        progress: bool = True) -> dict[str, Any]:
    """``pipelines``: one per corpus name (each over its own index)."""
    records: list[TurnRecord] = []
    todo = [(m, c) for m in modes for c in convs if c.corpus in pipelines]
    for mode, conv in tqdm(todo, desc="conversations", unit="conv", disable=not progress):
        records += replay(pipelines[conv.corpus], conv, mode, answers)
    result: dict[str, Any] = {"modes": {}, "by_language": {}}
    for mode in modes:
        mine = [r for r in records if r.mode == mode]
        result["modes"][mode] = summarize(mine)
        for lang in sorted({r.lang for r in mine}):
            result["by_language"].setdefault(lang, {})[mode] = summarize([r for r in mine if r.lang == lang])
    ceiling = []
    for corpus, pipe in pipelines.items():
        ceiling += standalone_recall(pipe.retriever, [c for c in convs if c.corpus == corpus])
    result["standalone_recall_at_5"] = _rate(ceiling)
    result["conversations"] = len({c.id for _, c in todo})
    result["records"] = [asdict(r) for r in records]
    return result


def write_report(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    cols = ["recall_at_5", "answered_correctly", "false_refusal", "unanswerable_refused", "citation_accuracy",
            "ttft_ms_p50", "rewrite_ms_p50", "rewritten_share"]

    def row(name: str, m: dict[str, Any]) -> str:
        return f"| {name} | " + " | ".join("-" if m.get(c) is None else f"{m[c]}" for c in cols) + " |"

    lines = [f"# Conversations: {result['conversations']} conversations, "
             f"{result['modes'][next(iter(result['modes']))]['follow_up_turns']} follow-up turns", "",
             f"Model {result.get('model', '?')}, embedders {result.get('embedders', '?')}, CPU {result.get('cpu', '?')}.",
             "Rates are over follow-up turns (answerable or unanswerable as marked). "
             f"Recall@5 of the same follow-ups written out in full: **{result['standalone_recall_at_5']}**.", "",
             "| rewrite | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [row(mode, m) for mode, m in result["modes"].items()]
    for lang, modes in result["by_language"].items():
        lines += [row(f"{mode} ({lang})", m) for mode, m in modes.items()]
    lines += ["", f"Command: `{result.get('command', '')}`"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(result, out.with_suffix(".png"))


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["modes"]) + ["standalone"]
    values = [result["modes"][m]["recall_at_5"] or 0 for m in result["modes"]] + [result["standalone_recall_at_5"] or 0]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(names, values, color=["#999", "#3a7", "#37a"][: len(names)])
    ax.set_ylim(0, 1)
    ax.set_ylabel("Recall@5, follow-up turns")
    ax.set_title("Follow-up retrieval by rewrite mode")
    for i, v in enumerate(values):
        ax.text(i, v + 0.02, f"{v:.2f}", ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
