"""Structure-aware chunking measured in the embedder's own tokens.

A document's sections (Markdown/HTML headings, PDF pages) are never merged. Inside a section,
paragraphs are packed greedily up to the token budget; a paragraph over the budget is split into
sentences, a sentence over it into word windows, so that no chunk is ever truncated by the
embedder. Overlap repeats trailing sentences/paragraphs of the previous chunk (whole units only,
up to ``overlap`` tokens). Every chunk is a ``[start, end)`` span of the document text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rag.text import detect_lang
from rag.types import Chunk, Document

CountFn = Callable[[Sequence[str]], list[int]]
MAX_TITLE_CHARS = 200

_PARA = re.compile(r"\n[ \t]*\n")
# Sentence ends: . ! ? (and CJK full stops) followed by space, or a line break.
_SENT = re.compile(r"(?<=[.!?。！？])[\"')\]]*\s+|\n")
_WORD = re.compile(r"\S+")

Span = tuple[int, int]


def _strip(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def _split(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[Span]:
    spans, pos = [], start
    for m in pattern.finditer(text, start, end):
        s = _strip(text, pos, m.start())
        if s:
            spans.append(s)
        pos = m.end()
    s = _strip(text, pos, end)
    if s:
        spans.append(s)
    return spans


class Chunker:
    """Splits documents into chunks of at most ``max_tokens`` embedder tokens (prompt included)."""

    def __init__(self, count_tokens: CountFn, max_tokens: int, overhead: int = 2, overlap: int = 32) -> None:
        if max_tokens - overhead < 16:
            raise ValueError("chunk budget too small")
        self.count = count_tokens
        self.max_tokens = max_tokens
        self.overhead = overhead
        self.overlap = overlap

    def config(self) -> dict[str, int]:
        return {"max_tokens": self.max_tokens, "overlap": self.overlap}

    # -- splitting a unit that is over the budget -------------------------------------------
    def _fit(self, text: str, spans: list[Span], budget: int) -> list[tuple[Span, int]]:
        """(span, tokens) units, each within ``budget``, refining spans that are too long."""
        counts = self.count([text[s:e] for s, e in spans])
        out: list[tuple[Span, int]] = []
        for (s, e), n in zip(spans, counts):
            if n <= budget:
                out.append(((s, e), n))
                continue
            finer = _split(text, s, e, _SENT)
            if len(finer) <= 1:
                finer = _split(text, s, e, _WORD)
            if len(finer) <= 1:
                out.extend(self._char_windows(text, s, e, budget))
            else:
                out.extend(self._fit(text, finer, budget))
        return out

    def _char_windows(self, text: str, s: int, e: int, budget: int) -> list[tuple[Span, int]]:
        """Last resort for a single giant token run (a URL, base64...): fixed character windows."""
        out = []
        width = max(1, budget)
        while s < e:
            end = min(e, s + width)
            n = self.count([text[s:end]])[0]
            while n > budget and end - s > 1:
                end = s + max(1, (end - s) // 2)
                n = self.count([text[s:end]])[0]
            out.append(((s, end), n))
            s = end
        return out

    # -- packing ----------------------------------------------------------------------------
    def _pack(self, units: list[tuple[Span, int]], budget: int) -> list[list[tuple[Span, int]]]:
        groups: list[list[tuple[Span, int]]] = []
        cur: list[tuple[Span, int]] = []
        total = 0
        for unit in units:
            n = unit[1]
            if cur and total + n > budget:
                groups.append(cur)
                # Carry whole trailing units of the previous chunk as overlap.
                carry: list[tuple[Span, int]] = []
                carried = 0
                for prev in reversed(cur):
                    if carried + prev[1] > self.overlap or carried + prev[1] + n > budget:
                        break
                    carry.insert(0, prev)
                    carried += prev[1]
                if len(carry) == len(cur):  # overlap must not swallow the whole previous chunk
                    carry, carried = [], 0
                cur, total = carry, carried
            cur.append(unit)
            total += n
        if cur:
            groups.append(cur)
        return groups

    def chunk(self, doc: Document) -> list[Chunk]:
        text = doc.text
        title = doc.title[:MAX_TITLE_CHARS]
        sections = doc.sections or (("", 0, len(text)),)
        limit = self.max_tokens - self.overhead
        prefixes = ["\n".join(p for p in (title, heading) if p) for heading, _, _ in sections]
        prefix_tokens = self.count([p + "\n" if p else "" for p in prefixes])
        chunks: list[Chunk] = []
        for (heading, s, e), ptoks in zip(sections, prefix_tokens):
            if limit - ptoks < 16:  # absurdly long headings: keep them out of the budget's way
                heading = heading[: MAX_TITLE_CHARS // 2]
                ptoks = self.count(["\n".join(p for p in (title, heading) if p) + "\n"])[0]
            budget = max(16, limit - ptoks)
            paragraphs = _split(text, s, e, _PARA)
            if not paragraphs:
                continue
            units = self._fit(text, paragraphs, budget)
            for group in self._pack(units, budget):
                for span_start, span_end, n_tokens in self._verified(text, title, heading, group, limit):
                    body = text[span_start:span_end]
                    chunks.append(Chunk(
                        chunk_id=f"{doc.doc_id}#{len(chunks)}", doc_id=doc.doc_id, text=body, title=title,
                        source=doc.source, heading=heading, start=span_start, end=span_end,
                        n_tokens=n_tokens, lang=detect_lang(body), metadata=doc.metadata))
        return chunks

    def _verified(self, text: str, title: str, heading: str, group: list[tuple[Span, int]], limit: int
                  ) -> list[tuple[int, int, int]]:
        """Exact token count of the chunk as embedded; split further if the estimate was short."""
        start, end = group[0][0][0], group[-1][0][1]
        probe = Chunk(chunk_id="", doc_id="", text=text[start:end], title=title, heading=heading)
        n = self.count([probe.embed_text()])[0]
        if n <= limit:
            return [(start, end, n)]
        if len(group) == 1:
            (s, e), _ = group[0]
            finer = _split(text, s, e, _WORD)
            half = max(1, len(finer) // 2)
            pieces = [[((finer[0][0], finer[half - 1][1]), 0)], [((finer[half][0], finer[-1][1]), 0)]] \
                if len(finer) > 1 else [[((s, s + (e - s) // 2), 0)], [((s + (e - s) // 2, e), 0)]]
        else:
            mid = len(group) // 2
            pieces = [group[:mid], group[mid:]]
        return [r for piece in pieces for r in self._verified(text, title, heading, piece, limit)]
