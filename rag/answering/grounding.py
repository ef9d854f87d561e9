"""Grounding check: does a passage the answer cites state what each of its sentences says?

A small model that passes the retrieval gate on a near-topic question often answers from its own
knowledge and cites ``[1]`` anyway; a citation in range proves nothing. After generation the
answer is split into sentences (Kiwi for Korean) and each is checked against its cited passages:

* lexical support: the share of the sentence's own content terms (its BM25 terms minus the
  question's: what it adds) that one place of the passage holds — two consecutive sentences,
  which must also name its subject (one of the question terms it repeats) — with the index's
  analyser (stems, Kiwi morphemes), so the check reads both languages the way retrieval does. A
  wrong answer assembled from words scattered over a near-topic passage is not supported;
* a learned score, when a scorer is given (the cross-encoder, for languages it reads): the
  probability that the passage bears on the sentence, for paraphrases lexical overlap misses.

A sentence no cited passage supports is re-cited to the passage that does, or marked
unsupported; :func:`enforce` drops unsupported sentences and tells when nothing of substance is
left (the answer becomes a refusal). Thresholds come from ``python -m eval.calibrate_grounding``
(calibration data only, never the heldout part).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.text import split_sentences
from rag.types import Grounding

_CITE = re.compile(r"\[(\d+)\]")
_CITES = re.compile(r"\s*(?:\[\d+\])+")

REFUSAL_REASON = "the passages do not state this"

Scorer = Callable[[str, Sequence[str]], Sequence[float]]  # (sentence, passages) -> 0..1 each


@dataclass(frozen=True)
class Thresholds:
    lexical: float  # least share of the sentence's own terms a passage must hold
    learned: float | None = None  # least learned score (None: the learned signal is off)


def sentences_with_citations(answer: str) -> list[tuple[str, tuple[int, ...]]]:
    """(sentence text without markers, its cited numbers). A sentence without a marker takes the
    citations of the next cited sentence (\"X. Y [1].\" cites [1] for both), else of the previous."""
    out: list[tuple[str, tuple[int, ...]]] = []
    for a, b in split_sentences(answer):
        raw = answer[a:b]
        nums = tuple(dict.fromkeys(int(n) for n in _CITE.findall(raw)))
        text = re.sub(r"\s+([.,;:!?。])", r"\1", _CITES.sub("", raw)).strip()
        if text or not out:
            out.append((text, nums))
        elif nums:  # a line holding only markers belongs to the sentence before it
            prev_text, prev_nums = out[-1]
            out[-1] = (prev_text, tuple(dict.fromkeys(prev_nums + nums)))
    for i, (text, nums) in enumerate(out):
        if not nums:
            later = next((n for _, n in out[i + 1:] if n), ())
            earlier = next((n for _, n in reversed(out[:i]) if n), ())
            out[i] = (text, later or earlier)
    return [(t, n) for t, n in out if t]


def own_terms(sentence: str, question_terms: set[str], tokenize: Callable[[str], list[str]]) -> set[str]:
    return set(tokenize(sentence)) - question_terms


def passage_windows(passage: str, tokenize: Callable[[str], list[str]], size: int = 2) -> list[set[str]]:
    """The analysed terms of every ``size`` consecutive sentences of ``passage``."""
    sentences = [set(tokenize(passage[a:b])) for a, b in split_sentences(passage)] or [set(tokenize(passage))]
    return [set().union(*sentences[i:i + size]) for i in range(max(1, len(sentences) - size + 1))]


def local_support(own: set[str], subject: set[str], windows: Sequence[set[str]]) -> float:
    """How well one place of the passage states a sentence: the best share of the sentence's own
    terms in a window of consecutive sentences that also names its subject (at least one of the
    question terms it repeats). Terms scattered over a passage ("7" in one sentence, "Q5_K_M"
    in another) do not state a claim together; a subject put in other words still can."""
    best = 0.0
    for w in windows:
        if subject and not subject & w:
            continue
        best = max(best, len(own & w) / len(own))
    return best


def check(answer: str, question: str, passages: Sequence[str], tokenize: Callable[[str], list[str]],
          thresholds: Thresholds, scorer: Scorer | None = None) -> list[Grounding]:
    """One :class:`Grounding` per sentence of ``answer`` (``passages`` numbered from 1)."""
    q_terms = set(tokenize(question))
    p_windows = [passage_windows(p, tokenize) for p in passages]
    out = []
    for sentence, cited in sentences_with_citations(answer):
        s_terms = set(tokenize(sentence))
        terms, subject = s_terms - q_terms, s_terms & q_terms
        if not terms:  # restates the question: no claim of its own to check
            out.append(Grounding(sentence, tuple(cited), True, 1.0, 1.0, None, substantive=False))
            continue
        lexical = [local_support(terms, subject, w) for w in p_windows]
        learned = list(scorer(sentence, passages)) if scorer is not None and thresholds.learned is not None else None

        def supports(i: int) -> bool:
            return lexical[i] >= thresholds.lexical or (learned is not None and learned[i] >= thresholds.learned)

        def strength(i: int) -> float:
            return max(lexical[i], learned[i] if learned is not None else 0.0)

        valid = [n for n in cited if 1 <= n <= len(passages)]
        backing = [n for n in valid if supports(n - 1)]
        if not backing:  # the model cited the wrong passage (or none): does another one state it?
            others = sorted((i for i in range(len(passages)) if supports(i)), key=lambda i: (-strength(i), i))
            backing = [others[0] + 1] if others else []
        best = max(backing or valid or range(1, len(passages) + 1), key=lambda n: strength(n - 1), default=0)
        out.append(Grounding(sentence, tuple(backing or valid), bool(backing),
                             round(strength(best - 1), 4) if best else 0.0,
                             round(lexical[best - 1], 4) if best else 0.0,
                             round(learned[best - 1], 4) if best and learned is not None else None))
    return out


def render(grounding: Sequence[Grounding], keep_unsupported: bool) -> tuple[str, list[int]]:
    """(the answer text rebuilt from its checked sentences with their citations, cited numbers in
    order). ``keep_unsupported=False`` (enforce) leaves unsupported sentences out."""
    parts, cited = [], []
    for g in grounding:
        if not g.supported and not keep_unsupported:
            continue
        marks = "".join(f"[{n}]" for n in g.cited)
        m = re.search(r"[.!?。]+$", g.sentence)
        parts.append(f"{g.sentence[: m.start()]} {marks}{m.group(0)}" if m and marks else
                     f"{g.sentence} {marks}".rstrip())
        cited.extend(n for n in g.cited if n not in cited)
    return " ".join(parts), cited


def has_substance(grounding: Sequence[Grounding]) -> bool:
    """True when a supported sentence with a claim of its own is left."""
    return any(g.supported and g.substantive for g in grounding)
