"""LLM-as-a-judge: a (usually larger) model grades each answer with a fixed, versioned rubric.

Three verdicts per answer, each yes or no:

* ``faithful`` — every sentence is supported by the passage it cites (a refusal is faithful);
* ``correct`` — the answer agrees with the reference answer (a refusal of an answerable
  question is not correct);
* ``refusal_right`` — the assistant refused exactly when the reference says the documents do not
  answer the question.

Small local judges often break the requested format. The parser reads JSON, ``key: value`` lines
and loose prose; a verdict it cannot read is ``None`` and counted as unparsed in the report,
never turned into a number (judge libraries that let such scores become NaN lose them silently).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rag.types import GenParams

RUBRIC_VERSION = "judge-v1"
VERDICTS = ("faithful", "correct", "refusal_right")

SYSTEM = "You are a strict grader of answers given by a question-answering assistant. Follow the reply format exactly."
RUBRIC = """Question: {question}

Reference answer: {reference}

Passages the assistant was given:
{passages}

Assistant's answer: {answer}

Grade the assistant's answer. Answer each with yes or no:
faithful: every statement of the answer is supported by the passage it cites (a refusal counts as yes)
correct: the answer agrees with the reference answer (a refusal counts as no when there is a reference answer)
refusal_right: the assistant refused exactly when there is no reference answer

Reply in exactly three lines:
faithful: yes or no
correct: yes or no
refusal_right: yes or no"""
NO_REFERENCE = "(none: the documents do not answer this question, so the right response is a refusal)"

_TRUE = {"yes", "y", "true", "1", "예", "네", "correct", "supported", "right"}
_FALSE = {"no", "n", "false", "0", "아니오", "아니요", "incorrect", "unsupported", "wrong"}
_LINE = re.compile(r"(faithful|correct|refusal[ _-]?right)\W{0,3}\s*[:=\-]\s*\**\s*([A-Za-z가-힣0-9]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """One judged answer: each verdict True, False or None (the judge's reply did not say)."""

    faithful: bool | None
    correct: bool | None
    refusal_right: bool | None
    raw: str
    seconds: float

    @property
    def parsed(self) -> bool:
        return None not in (self.faithful, self.correct, self.refusal_right)


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    word = str(value).strip().strip(".,*\"'").lower()
    return True if word in _TRUE else False if word in _FALSE else None


def parse_verdicts(reply: str) -> dict[str, bool | None]:
    """The three verdicts from a judge's reply: JSON anywhere in it, else ``key: value`` lines."""
    found: dict[str, bool | None] = {k: None for k in VERDICTS}
    match = re.search(r"\{.*?\}", reply, re.DOTALL)
    if match:
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            for key, value in obj.items():
                name = re.sub(r"[ _-]", "_", str(key).lower())
                if name in found:
                    found[name] = _as_bool(value)
    for key, value in _LINE.findall(reply):
        name = "refusal_right" if key.lower().startswith("refusal") else key.lower()
        if found[name] is None:
            found[name] = _as_bool(value)
    return found


def rubric_prompt(question: str, references: Sequence[str], passages: Sequence[tuple[int, str]], answer: str,
                  max_passage_chars: int = 1200) -> str:
    reference = " | ".join(references) if references else NO_REFERENCE
    shown = "\n\n".join(f"[{n}] {text[:max_passage_chars]}" for n, text in passages) or "(none)"
    return RUBRIC.format(question=question, reference=reference, passages=shown, answer=answer)


def judge_answer(judge: Any, question: str, references: Sequence[str], passages: Sequence[tuple[int, str]],
                 answer: str) -> Verdict:
    """Ask ``judge`` (any Generator) to grade one answer; greedy, so a rerun gives the same verdicts."""
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": rubric_prompt(question, references, passages, answer)}]
    t0 = time.perf_counter()
    raw = "".join(judge.stream(messages, GenParams(temperature=0.0, max_tokens=40)))
    v = parse_verdicts(raw)
    return Verdict(v["faithful"], v["correct"], v["refusal_right"], raw[:300], round(time.perf_counter() - t0, 2))


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Agreement of two binary raters beyond chance: (p_o - p_e) / (1 - p_e); None when undefined."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    p_o = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    p_e = pa * pb + (1 - pa) * (1 - pb)
    return None if p_e == 1 else (p_o - p_e) / (1 - p_e)


def agreement(judged: Sequence[bool | None], gold: Sequence[bool]) -> dict[str, Any]:
    """Accuracy and Cohen's kappa of the judge against a gold-based verdict, over parsed items."""
    pairs = [(j, g) for j, g in zip(judged, gold) if j is not None]
    if not pairs:
        return {"n": 0, "accuracy": None, "kappa": None, "unparsed": len(judged)}
    js, gs = [p[0] for p in pairs], [p[1] for p in pairs]
    kappa = cohen_kappa(js, gs)
    return {"n": len(pairs), "accuracy": round(sum(j == g for j, g in pairs) / len(pairs), 4),
            "kappa": None if kappa is None else round(kappa, 4), "unparsed": len(judged) - len(pairs),
            "judge_yes": round(sum(js) / len(js), 4), "gold_yes": round(sum(gs) / len(gs), 4)}
