"""LLM-as-a-judge: a (usually larger) model grades each answer with a fixed, versioned rubric.

Three verdicts per answer, each from its own short yes/no question (rubric ``judge-v2``):

* ``faithful`` — every statement is supported by the passages (a refusal is faithful);
* ``correct`` — the answer agrees with the reference answer (a refusal of an answerable
  question is not correct);
* ``refusal_right`` — the assistant refused exactly when the reference says the documents do not
  answer the question.

Small local judges often break the requested format. A reply whose first words say neither yes nor
no (or both) is ``None`` and counted as unparsed in the report, never turned into a number (judge
libraries that let such scores become NaN lose them silently).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rag.types import GenParams

RUBRIC_VERSION = "judge-v2"
VERDICTS = ("faithful", "correct", "refusal_right")

SYSTEM = "You are a strict grader of answers given by a question-answering assistant. Reply with one word: yes or no."
# One short yes/no question per call: a 1.5B judge asked for three verdicts in one reply mixed them up
# (judge-v1 marked every answer incorrect, agreement with contains-gold kappa 0.00).
REFUSED = ("Question: {question}\n\nAssistant's reply: {answer}\n\nDoes the assistant decline to answer, saying "
           "it does not know or that the documents do not say? Reply yes or no.")
FAITHFUL = ("Passages:\n{passages}\n\nAnswer: {answer}\n\nIs every statement of the answer supported by the "
            "passages? Reply yes or no.")
CORRECT = ("Question: {question}\n\nReference answer: {reference}\n\nAssistant's answer: {answer}\n\nDoes the "
           "assistant's answer give the reference answer (the same meaning; other words are fine)? Reply yes or no.")

_YES = re.compile(r"\b(yes|예|네)\b", re.IGNORECASE)
_NO = re.compile(r"\b(no|아니오|아니요)\b", re.IGNORECASE)


def parse_verdict(reply: str) -> bool | None:
    """A yes/no reply (English or Korean, any case, Markdown or punctuation around it); None when
    the first words say neither or both, so an unreadable verdict is never counted as either."""
    head = reply.strip()[:40]
    yes, no = bool(_YES.search(head)), bool(_NO.search(head))
    return yes if yes != no else None


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


def ask(judge: Any, prompt: str) -> tuple[bool | None, str]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    raw = "".join(judge.stream(messages, GenParams(temperature=0.0, max_tokens=4)))
    return parse_verdict(raw), raw


def judge_answer(judge: Any, question: str, references: Sequence[str], passages: Sequence[tuple[int, str]],
                 answer: str, max_passage_chars: int = 1200) -> Verdict:
    """Grade one answer with ``judge`` (any Generator), greedy so a rerun gives the same verdicts.

    The judge first says whether the reply is a refusal; a refusal is faithful and is correct only
    when there is no reference answer. An answer is then checked for support by the passages and,
    when there is a reference, for agreement with it (an answer to an unanswerable question is not
    correct). ``refusal_right``: the judge's refusal verdict matches the reference's absence."""
    t0 = time.perf_counter()
    refused, raw = ask(judge, REFUSED.format(question=question, answer=answer))
    faithful = correct = None
    if refused is True:
        faithful, correct = True, not references
    elif refused is False:
        shown = "\n\n".join(f"[{n}] {text[:max_passage_chars]}" for n, text in passages) or "(none)"
        faithful, r2 = ask(judge, FAITHFUL.format(passages=shown, answer=answer))
        raw += " | " + r2
        if references:
            correct, r3 = ask(judge, CORRECT.format(question=question, reference=" | ".join(references), answer=answer))
            raw += " | " + r3
        else:
            correct = False
    refusal_right = None if refused is None else refused == (not references)
    return Verdict(faithful, correct, refusal_right, raw[:300], round(time.perf_counter() - t0, 2))


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
