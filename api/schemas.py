"""HTTP request/response schemas (separate from the internal frozen dataclasses).

The response models validate the dicts of ``rag.serialize``, the same ones ``rag ... --json`` prints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag.types import Filters, Turn

MAX_QUERY_CHARS = 2000


def _not_blank(v: str, info) -> str:
    """Shared by every free-text field: whitespace alone is not a question."""
    if not v.strip():
        raise ValueError(f"{info.field_name} must not be blank")
    return v


class FiltersIn(BaseModel):
    """Restrict retrieval; all given conditions must hold."""

    model_config = ConfigDict(extra="forbid")
    doc_id: list[str] = Field(default_factory=list, description="Any of these document ids.")
    source: str | None = Field(None, description="Glob over the source path, e.g. '*/retrieval/*'.")
    metadata: dict[str, str] = Field(default_factory=dict, description="Document metadata field = value.")

    def to_filters(self) -> Filters:
        return Filters(tuple(self.doc_id), self.source, tuple(self.metadata.items()))


def _filters(f: FiltersIn | None) -> Filters | None:
    return f.to_filters() if f else None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"query": "What does k1 control in BM25?", "top_k": 5, "mode": "hybrid"},
                     {"query": "한국어 형태소 분석", "filters": {"source": "*retrieval*"}}]})
    query: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: int | None = Field(None, ge=1, le=50, description="Hits returned (default: the collection's RAG_TOP_K).")
    mode: Literal["bm25", "dense", "hybrid"] | None = Field(
        None, description="Retrieval mode (default: the collection's RAG_RETRIEVAL_MODE).")
    rerank: bool | None = Field(None, description="Default: on when a reranker is configured.")
    filters: FiltersIn | None = None

    _query_not_blank = field_validator("query")(_not_blank)

    def to_filters(self) -> Filters | None:
        return _filters(self.filters)


class StageScores(BaseModel):
    bm25: float | None = None
    dense: float | None = None
    fused: float | None = None
    rerank: float | None = None


class StageRanks(BaseModel):
    bm25: int | None = None
    dense: int | None = None
    fused: int | None = None
    rerank: int | None = None


class HitOut(BaseModel):
    chunk_id: str
    doc_id: str
    title: str
    source: str
    heading: str
    start: int
    end: int
    text: str
    score: float
    scores: StageScores
    ranks: StageRanks


class SearchResponse(BaseModel):
    mode: str
    reranked: bool
    dense_used: bool
    query_lang: str
    candidates: int
    timings_ms: dict[str, float]
    hits: list[HitOut]
    index_version: int


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    ready: bool
    index_dir: str
    index_version: int | None = None
    documents: int | None = None
    chunks: int | None = None
    embedder: str | None = None
    reranker: str
    generator: str = "not loaded"
    detail: str | None = None


class DocumentIn(BaseModel):
    """A JSON document for POST /documents (files go as multipart uploads instead)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1, max_length=512)
    text: str = Field(..., min_length=1)
    title: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)


class DocumentsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"documents": [
        {"id": "faq/refunds", "title": "Refunds", "text": "Refunds are issued within 14 days.",
         "metadata": {"team": "support"}}]}]})
    documents: list[DocumentIn] = Field(..., min_length=1, max_length=1000)


class IngestOut(BaseModel):
    index_version: int | None
    committed: bool
    added: int
    updated: int
    unchanged: int
    removed: int
    chunks_total: int
    skipped: list[dict[str, str]]
    seconds: float


class DocumentOut(BaseModel):
    doc_id: str
    title: str | None
    source: str | None
    format: str | None
    n_chunks: int | None
    n_chars: int | None
    lang: str | None
    metadata: dict
    ingested_at: str | None


class DocumentList(BaseModel):
    total: int
    documents: list[DocumentOut]


class ErrorOut(BaseModel):
    """Every 4xx/5xx body: a short error name and the detail (a message, or per-field messages)."""

    error: str
    detail: str | list | None = None


class JobOut(BaseModel):
    """A write job (``POST``/``DELETE /documents``): queued, running, then succeeded (``result``),
    failed (``error``) or cancelled. ``stage``/``done``/``total`` show its progress."""

    id: str
    collection: str = "default"
    kind: str = Field(description="add (JSON documents), upload (files) or delete")
    description: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    stage: str = Field(description="queued, starting, waiting for the index lock, chunk, embed, commit, or the status")
    done: int
    total: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    cancel_requested: bool
    result: IngestOut | None
    error: ErrorOut | None


class JobList(BaseModel):
    jobs: list[JobOut]


COLLECTION_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class CollectionIn(BaseModel):
    """A new collection: its name and the settings it sets for itself (embedder, chunking, retrieval,
    gate and answer settings; the rest are the service's)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=COLLECTION_NAME, description="1-63 characters of a-z, 0-9, '-' and '_'")
    settings: dict[str, str | int | float | bool | None | dict[str, float]] = Field(
        default_factory=dict, description="e.g. {\"embedder\": \"e5-small\", \"top_k\": 5}; 'auto' embedder "
        "choice follows the collection's own documents")


class CollectionOut(BaseModel):
    name: str
    created_at: str | None = None
    settings: dict = Field(default_factory=dict)
    documents: int = 0
    chunks: int = 0
    index_version: int | None = None
    embedder: str | None = None
    languages: dict | list | None = None
    ready: bool
    detail: str | None = None


class CollectionList(BaseModel):
    collections: list[CollectionOut]


class KeyIn(BaseModel):
    """A new API key: read (search, ask, list documents) and write (also add and delete documents)
    grants on named collections, or admin (everything)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=100, description="A label for people (who or what uses the key)")
    read: list[str] = Field(default_factory=list, max_length=1000)
    write: list[str] = Field(default_factory=list, max_length=1000)
    admin: bool = False


class KeyOut(BaseModel):
    id: str
    name: str
    admin: bool
    read: list[str]
    write: list[str]
    created_at: str


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself: shown this once, stored only as its SHA-256")


class KeyList(BaseModel):
    keys: list[KeyOut]


ERRORS = {400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}, 429: {"model": ErrorOut},
          503: {"model": ErrorOut}}


MAX_TURNS = 50
MAX_TURN_CHARS = 8000


class TurnIn(BaseModel):
    """One earlier message of the conversation."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str = Field(..., max_length=MAX_TURN_CHARS)

    def to_turn(self) -> Turn:
        return Turn(self.role, self.content)


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"question": "What does the k1 parameter of BM25 control?"},
        {"question": "BM25에서 k1은 무엇을 조절하나요?", "top_k": 3, "stream": True},
        {"question": "What is a typical value for it?", "history": [
            {"role": "user", "content": "What does the k1 parameter of BM25 control?"},
            {"role": "assistant", "content": "k1 controls term-frequency saturation [1]."}]},
        {"question": "How do I reduce hallucinations?", "filters": {"source": "*prompting*"}, "temperature": 0.2}]})
    question: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS)
    history: list[TurnIn] = Field(default_factory=list, max_length=MAX_TURNS, description=(
        "Earlier turns of the conversation, oldest first. A follow-up that leans on them is rewritten into a "
        "standalone search query (returned as `query`); they are context for the answer, never a source."))
    top_k: int | None = Field(None, ge=1, le=20, description="Passages given to the LLM (default RAG_CONTEXT_PASSAGES).")
    filters: FiltersIn | None = None
    stream: bool = Field(False, description="Server-Sent Events: token deltas, then one final 'answer' event.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=4096)

    _question_not_blank = field_validator("question")(_not_blank)

    def to_filters(self) -> Filters | None:
        return _filters(self.filters)

    def turns(self) -> list[Turn]:
        return [t.to_turn() for t in self.history]


class CitationOut(BaseModel):
    n: int
    doc_id: str
    chunk_id: str
    title: str
    source: str
    snippet: str
    score: float


class GroundingOut(BaseModel):
    """One answer sentence checked against the passages it cites."""

    sentence: str
    cited: list[int] = Field(description="Passage numbers that back it (re-cited when another passage states it).")
    supported: bool
    score: float = Field(description="The best support signal, 0..1.")
    lexical: float = Field(description="Share of the sentence's own content terms the passage holds.")
    learned: float | None = Field(description="The cross-encoder's score, when that signal is on.")


class AskResponse(BaseModel):
    answer: str
    refused: bool
    refusal_reason: str | None
    citations: list[CitationOut]
    timings_ms: dict[str, float]
    model: str
    query: str = Field(description="What was searched: the question, or its standalone rewrite in a conversation.")
    rewritten: bool
    usage: dict[str, float] = Field(description="prompt_tokens, completion_tokens, and the LLM's prefill and decode "
                                                "speed in tokens per second.")
    grounding: list[GroundingOut] = Field(description="Each answer sentence checked against its cited passages "
                                                      "(empty when the check is off or nothing was answered).")
    index_version: int


# --- OpenAI-compatible chat completions -------------------------------------------------------

class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict] | None = Field(None, description="Text, or OpenAI content parts (text parts are used).")

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type", "text") == "text")
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request. The last user message is the question; earlier user and
    assistant messages are the conversation; system messages are ignored (the service keeps its own
    grounding rules). ``top_k`` and ``filters`` are this service's extensions."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"model": "rag", "messages": [{"role": "user", "content": "What does k1 control in BM25?"}]},
        {"model": "rag", "stream": True, "messages": [
            {"role": "user", "content": "What is reciprocal rank fusion?"},
            {"role": "assistant", "content": "It merges ranked lists by summing 1/(k + rank) [1]."},
            {"role": "user", "content": "What value of k is usual?"}]}]})
    model: str = "rag"
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=MAX_TURNS + 1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    top_k: int | None = Field(None, ge=1, le=20, description="Passages given to the LLM (extension).")
    filters: FiltersIn | None = Field(None, description="Restrict retrieval (extension).")

    def question_and_history(self) -> tuple[str, list[Turn]]:
        """(the last user message, the user/assistant turns before it)."""
        turns = [Turn(m.role, m.text()) for m in self.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user" or not turns[-1].content.strip():
            raise ValueError("the last user or assistant message must be a non-empty user message")
        if len(turns[-1].content) > MAX_QUERY_CHARS:
            raise ValueError(f"the question is longer than {MAX_QUERY_CHARS} characters")
        return turns[-1].content, [Turn(t.role, t.content[:MAX_TURN_CHARS]) for t in turns[:-1]]

    def to_filters(self) -> Filters | None:
        return _filters(self.filters)


class RagExtra(BaseModel):
    """This service's extra field on a chat completion (and on the last stream chunk)."""

    refused: bool
    refusal_reason: str | None
    citations: list[CitationOut]
    query: str
    rewritten: bool
    answer: str = Field(description="The checked answer (out-of-range citations removed or repaired, "
                                    "unsupported sentences dropped); in a stream it can differ from the deltas.")
    grounding: list[GroundingOut] = Field(default_factory=list, description="Each answer sentence checked "
                                          "against its cited passages.")
    timings_ms: dict[str, float]
    index_version: int


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatChoiceMessage
    finish_reason: Literal["stop", "length"] = "stop"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    rag: RagExtra


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rag-service"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
