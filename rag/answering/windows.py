"""Sentence windows: the part of a passage that bears on the question, for a shorter prompt.

On a CPU the first answer token waits for the whole prompt to be evaluated (prefill), so every
passage token the model reads costs time before anything is shown. A window keeps the sentences
that best match the question, with their neighbours for context, in document order and with
"…" where text was left out; the citation still names the whole passage.

Sentences are scored with the weights BM25 already gives the question's terms (their IDF in the
index), using the index's own analyser (stems for English, Kiwi morphemes for Korean), so no
extra model runs. A passage with no matching sentence (a dense-only match) keeps its opening.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rag.text import split_sentences

GAP = "…"


def _cut(text: str, count_tokens: Callable[[str], int], budget: int) -> str:
    """The longest prefix of ``text`` within ``budget`` tokens (binary search on characters)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(text[:mid]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip()


def _pick(scores: list[float], costs: list[int], budget: int, neighbours: int) -> list[int]:
    """Sentence indices to keep: best-scoring first, each with ``neighbours`` on either side while
    the budget allows (a sentence alone when its window does not fit); the opening sentences
    when nothing matches."""
    chosen: set[int] = set()
    used = 0
    n = len(scores)
    for i in sorted((i for i in range(n) if scores[i] > 0), key=lambda i: (-scores[i], i)):
        window = [j for j in range(max(0, i - neighbours), min(n, i + neighbours + 1)) if j not in chosen]
        cost = sum(costs[j] for j in window)
        if used + cost > budget:
            window = [i] if i not in chosen else []
            cost = sum(costs[j] for j in window)
            if not window or used + cost > budget:
                continue
        chosen.update(window)
        used += cost
    if not chosen:
        for j in range(n):
            if used + costs[j] > budget:
                break
            chosen.add(j)
            used += costs[j]
    return sorted(chosen)


def sentence_window(text: str, query_terms: Iterable[str], weight: Callable[[str], float],
                    tokenize: Callable[[str], list[str]], count_tokens: Callable[[str], int],
                    budget: int, neighbours: int = 1) -> str:
    """``text`` itself when it fits ``budget`` tokens, else its best-matching sentences (see the
    module docstring) joined in document order, ``…`` marking what was left out."""
    if count_tokens(text) <= budget:
        return text
    spans = split_sentences(text)
    sentences = [text[a:b] for a, b in spans]
    if not sentences:
        return _cut(text, count_tokens, budget)
    terms = set(query_terms)
    scores = [sum(weight(t) for t in set(tokenize(s)) & terms) for s in sentences]
    costs = [count_tokens(s) + 1 for s in sentences]
    keep = _pick(scores, costs, budget - 2, neighbours)  # - 2: the gap markers
    if not keep:  # even the best sentence alone is over budget: its start
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        return _cut(sentences[best], count_tokens, budget - 2) + f" {GAP}"
    parts: list[str] = []
    prev = -1
    for j in keep:
        if j != prev + 1:
            parts.append(GAP)
        parts.append(sentences[j])
        prev = j
    if prev != len(sentences) - 1:
        parts.append(GAP)
    return " ".join(parts)
