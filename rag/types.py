"""Value types shared by ingest, retrieval, generation and the API (immutable by design)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """A whole source document after loading and decoding, before chunking.

    ``sections`` are (heading_path, start, end) character spans of ``text`` that the chunker
    must not merge across (Markdown/HTML sections, PDF pages); empty means "one section".
    """

    doc_id: str
    text: str
    title: str = ""
    source: str = ""
    format: str = "text"
    sections: tuple[tuple[str, int, int], ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Chunk:
    """A retrievable passage: a character span ``[start, end)`` of its document's text."""

    chunk_id: str
    doc_id: str
    text: str
    title: str = ""
    source: str = ""
    heading: str = ""
    start: int = 0
    end: int = 0
    n_tokens: int = 0
    lang: str = "en"
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def embed_text(self) -> str:
        """The text given to the embedder and the BM25 tokenizer: title, heading path, body."""
        heading = self.heading
        if self.title and heading.startswith(self.title):  # Markdown H1 = title: say it once
            parts = [heading]
        else:
            parts = [p for p in (self.title, heading) if p]
        parts.append(self.text)
        return "\n".join(parts)


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk with the score and rank each stage gave it (None = stage not run)."""

    chunk: Chunk
    score: float
    bm25_score: float | None = None
    bm25_rank: int | None = None
    dense_score: float | None = None
    dense_rank: int | None = None
    fused_score: float | None = None
    fused_rank: int | None = None
    rerank_score: float | None = None
    rerank_rank: int | None = None


@dataclass(frozen=True)
class Citation:
    """A passage an answer cites as ``[n]``."""

    n: int
    hit: Hit


@dataclass(frozen=True)
class Turn:
    """One earlier message of a conversation: ``role`` is 'user' or 'assistant'."""

    role: str
    content: str


@dataclass(frozen=True)
class Grounding:
    """One answer sentence checked against the passages it cites (see rag.answering.grounding)."""

    sentence: str
    cited: tuple[int, ...]  # passage numbers backing it (re-cited when another passage states it)
    supported: bool
    score: float  # the best support signal of the best passage, 0..1
    lexical: float  # share of the sentence's own terms that passage holds
    learned: float | None = None  # the learned score, when one ran
    substantive: bool = True  # False: the sentence only restates the question


@dataclass(frozen=True)
class Answer:
    """A generated answer. A refusal is data (``refused=True``), never an exception."""

    text: str
    refused: bool
    refusal_reason: str | None = None
    citations: tuple[Citation, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict, hash=False, compare=False)
    model: str = ""
    tokens: int = 0  # generated tokens (0 when the gate refused before calling the LLM)
    agreement: float | None = None  # self-consistency of sampled answers (RAG_CONSISTENCY_SAMPLES), else None
    samples: tuple[str, ...] = field(default=(), hash=False, compare=False)  # the sampled answers behind it
    query: str = ""  # what was searched: the question, or its standalone rewrite in a conversation
    rewritten: bool = False
    prompt_tokens: int = 0  # the prompt the LLM evaluated before its first token (0 when it was not called)
    grounding: tuple[Grounding, ...] = ()  # per-sentence support (empty: check off, or no answer to check)

    def usage(self) -> dict[str, float]:
        """Prompt and answer tokens, and the LLM's speed: prefill (prompt tokens per second of time to
        first token) and decode (answer tokens after the first per second)."""
        ttft, gen = self.timings_ms.get("ttft", 0.0), self.timings_ms.get("generate", 0.0)
        prefill = self.prompt_tokens / (ttft / 1000) if ttft > 0 and self.prompt_tokens else 0.0
        decode = (self.tokens - 1) / ((gen - ttft) / 1000) if gen > ttft and self.tokens > 1 else 0.0
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.tokens,
                "prefill_tokens_per_s": round(prefill, 1), "decode_tokens_per_s": round(decode, 1)}


@dataclass(frozen=True)
class Filters:
    """Restrict retrieval to some documents. All given conditions must hold (AND).

    ``doc_ids``: any of these ids; ``source``: a glob over the source path (``docs/*.md``);
    ``metadata``: (field, value) pairs matched against document metadata.
    """

    doc_ids: tuple[str, ...] = ()
    source: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.doc_ids or self.source or self.metadata)


@dataclass(frozen=True)
class SearchResult:
    """Hits plus what happened: stage timings, whether dense/rerank ran, candidate counts."""

    hits: tuple[Hit, ...]
    mode: str
    timings_ms: dict[str, float] = field(default_factory=dict, hash=False, compare=False)
    reranked: bool = False
    dense_used: bool = False
    query_lang: str = "en"
    n_candidates: int = 0


@dataclass(frozen=True)
class GenParams:
    """Sampling parameters of one generation."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = 0
    stop: tuple[str, ...] = field(default_factory=tuple)
