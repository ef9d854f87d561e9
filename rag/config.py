"""Settings: one pydantic-settings class read from ``RAG_*`` environment variables (or ``.env``).

Get them through :func:`get_settings` (cached); tests and the API override them through
``app.dependency_overrides[get_settings]`` or by passing a ``Settings`` explicitly.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag.errors import ConfigError
from rag.prompt import EXAMPLES_TOKENS_BOUND, MIN_PASSAGE_TOKENS, PROMPT_OVERHEAD_TOKENS


class Settings(BaseSettings):
    """Every tunable of the service. Index-shaping settings are recorded in the index manifest."""

    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    # --- index location and embedder -------------------------------------------------------
    index_dir: Path = Field(Path("indexes/default"), description="Index directory used by default.")
    embedder: str = Field(
        "auto",
        description="'auto' (a new index picks e5-small when over 10 % of its documents are not "
        "English, else minilm; an existing index keeps its embedder), a preset ('minilm', "
        "'e5-small') or any sentence-transformers model name or local path. Recorded in the "
        "manifest; querying with another is an error.",
    )
    embed_batch_size: int = Field(32, ge=1, le=1024)
    embed_threads: int = Field(2, ge=1, description="CPU threads for the embedder.")

    # --- chunking ---------------------------------------------------------------------------
    chunk_tokens: int | None = Field(
        None, ge=16, description="Max chunk length in embedder tokens (default: the embedder's limit)."
    )
    chunk_overlap: int = Field(32, ge=0, description="Overlap between consecutive chunks, in tokens.")

    # --- BM25 and tokenizer -----------------------------------------------------------------
    bm25_k1: float = Field(1.2, gt=0)
    bm25_b: float = Field(0.75, ge=0, le=1)
    bm25_epsilon: float = Field(0.25, ge=0, description="rank-bm25's floor for negative IDF.")
    tokenizer_stem: bool = True
    tokenizer_stopwords: bool = True
    tokenizer_korean: Literal["kiwi", "none"] = "kiwi"

    # --- dense index ------------------------------------------------------------------------
    dense_index: Literal["flat", "hnsw"] = "flat"
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_construction: int = Field(200, ge=8)
    hnsw_ef_search: int = Field(128, ge=8)

    # --- retrieval --------------------------------------------------------------------------
    retrieval_mode: Literal["bm25", "dense", "hybrid"] = "hybrid"
    candidates: int = Field(100, ge=1, le=2000, description="Top-N taken from each index before fusion.")
    top_k: int = Field(10, ge=1, le=200, description="Hits returned by default.")
    fusion: Literal["rrf", "convex"] = Field("convex", description="How the BM25 and dense lists are fused.")
    rrf_k: float = Field(60.0, gt=0)
    fusion_alpha: float = Field(0.5, ge=0, le=1, description="Dense weight in convex fusion (BM25 gets 1-alpha).")
    fusion_norm: Literal["minmax", "zscore"] = "minmax"
    language_gate: bool = Field(
        True, description="Drop the dense list for queries in a language the embedder does not know "
        "(e.g. Korean with all-MiniLM-L6-v2) instead of letting it drag the fusion down.")
    reranker: str = Field(
        "models/reranker", description="A local CrossEncoder directory (default: where `rag train-reranker` "
        "saves; when it does not exist the service runs without reranking and says so), a model name, or 'none'.")
    rerank_top: int = Field(15, ge=1, le=500, description="Fused candidates the cross-encoder rescores (15: on "
                            "SciFact dev 0.771 nDCG@10 at 420 ms vs 0.778 at 900 ms for 30, int8).")
    rerank_weight: float = Field(
        0.5, ge=0, le=1, description="Final score = w * minmax(cross-encoder) + (1-w) * minmax(fused); "
        "0.5 was best on SciFact dev queries (0.2 / 0.35 / 0.5 / 1.0 tried).")
    rerank_max_length: int = Field(256, ge=32, le=512)
    reranker_languages: str = Field(
        "en", description="Comma-separated languages the cross-encoder knows ('any' for a multilingual one). The "
        "project's reranker starts from all-MiniLM-L6-v2 (English): with language_gate on, queries in other "
        "languages skip reranking instead of being reordered by a model that cannot read them.")
    rerank_precision: Literal["float32", "bfloat16", "int8"] = Field(
        "int8", description="Cross-encoder arithmetic on CPU. int8: dynamic quantisation of the Linear layers; "
        "bfloat16: autocast (fast only on CPUs with AVX512-BF16 or AMX); both about half the float32 time here "
        "(eval.bench_retrieval). int8 has no measured loss on SciFact dev/heldout (README).")
    rerank_score_space: Literal["probability", "logit"] = Field(
        "logit", description="Which cross-encoder score is min-max normalised for the interpolation with the "
        "fused score: its logit (keeps the spread between confident scores that the sigmoid squashes; SciFact "
        "dev 0.779 vs 0.771, SQuAD dev 0.917 vs 0.918) or the model's sigmoid output (0..1).")

    # --- generation -------------------------------------------------------------------------
    generator: Literal["local", "openai", "hf"] = Field("local", description="LLM backend.")
    llm_model: str = Field(
        "qwen2.5-1.5b", description="local: preset (smollm2, qwen2.5-0.5b, qwen2.5-1.5b) or a .gguf path; "
        "openai/hf: the served model name.")
    llm_base_url: str = Field("http://127.0.0.1:8080", description="openai/hf backends: server base URL.")
    llm_api_key: str = ""
    llm_timeout: float = Field(120.0, gt=0, description="Seconds before a backend call fails with 504.")
    llm_retries: int = Field(2, ge=0, le=5, description="Retries of connection failures (before any token).")
    llm_context_tokens: int = Field(4096, ge=512)
    llm_threads: int = Field(2, ge=1)
    max_tokens: int = Field(256, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = 0
    prompt_version: int = Field(
        1, ge=1, le=3, description="1: passages then the question. 2: the question before and after the "
        "passages and an explicit exact-match check before answering (rag.prompt.SYSTEM_PROMPT_V2; README). "
        "3: version 1 plus three worked examples (one answered, two refused; rag.prompt.few_shot_messages).")
    context_passages: int = Field(
        3, ge=1, le=20, description="Passages offered to the LLM (best first). 3 since session 6: TTFT about 0.6x "
        "of 5 passages, answer quality alike within the noise of 100 SQuAD / 30 KorQuAD train-part questions (README).")
    consistency_samples: int = Field(
        0, ge=0, le=10, description="Self-consistency check (experiment, off by default): after an answer, draw "
        "this many more at consistency_temperature and refuse when they agree with it less than "
        "consistency_min_agreement (rag.prompt.agreement; the prompt is evaluated once, samples reuse it). "
        "With streaming, the greedy answer's deltas are sent first and the final event may still refuse.")
    consistency_temperature: float = Field(0.8, gt=0, le=2)
    consistency_min_agreement: float = Field(
        0.0, ge=0, le=1, description="0 records the agreement (Answer.agreement) without ever refusing on it.")
    citation_repair: bool = Field(
        True, description="Cite the passage holding most of the answer's own terms when the model cited none, or "
        "when it holds over twice as many as every passage the model cited (rag.prompt.repair_citations).")
    # Retrieval gate: refuse without calling the LLM when the best candidate is this weak.
    # Calibrated by `python -m eval.calibrate_gate` (eval/results/gate_calibration_*.md): the values
    # that refuse >= 98 % of hand-written out-of-corpus questions and pass the most in-corpus ones.
    gate_bm25: float = Field(0.39, ge=0, le=1.01, description="Min BM25 top score / its ceiling for the query "
                             "(1.01 switches this signal off).")
    gate_bm25_lang: dict[str, float] = Field(
        default_factory=lambda: {"minilm/ko": 0.25, "e5-small/ko": 0.32},
        description="BM25-ratio thresholds replacing gate_bm25 for one embedder's index and query language "
        "('EMBEDDER/LANG'): the ratio's scale follows the tokenizer (Kiwi morphemes for Korean) and the index's "
        "chunking. Calibrated by `python -m eval.calibrate_gate --embedder E --lang ko` on KorQuAD train/dev "
        "questions vs 30 Korean out-of-corpus ones: minilm/ko (BM25 is a Korean question's only signal on a "
        "MiniLM index) passes 93.7 % instead of 52.7 %; e5-small/ko 99.2 % instead of 97.8 %; no more "
        "out-of-corpus questions pass.")
    gate_dense: dict[str, float] = Field(
        default_factory=lambda: {"minilm": 0.38, "e5-small": 0.85},
        description="Min cosine of the best dense hit, per embedder (scales differ by model).")
    gate_rerank: float | None = Field(
        None, description="Min best cross-encoder score (0..1) on top of the first-stage gate when a reranker is "
        "active; off: on SQuAD dev the project's reranker scored answerable and unanswerable questions alike "
        "(AUC 0.52, `python -m eval.sweep_rerank_gate`).")

    # --- HTTP service -----------------------------------------------------------------------
    api_keys: str = Field("", description="Comma-separated API keys; empty = no auth. Clients send "
                          "'Authorization: Bearer KEY'. /healthz stays open.")
    max_body_mb: float = Field(20.0, gt=0, description="Larger request bodies get 413.")

    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    # --- ingest limits ----------------------------------------------------------------------
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this are skipped.")
    keep_versions: int = Field(2, ge=1, description="Index versions kept on disk after a commit.")

    @model_validator(mode="after")
    def _context_fits(self) -> Settings:
        """The context window must hold the prompt, the answer and at least one passage; otherwise every
        /ask would overflow the model (caught here, at start-up, rather than per request)."""
        examples = EXAMPLES_TOKENS_BOUND if self.prompt_version == 3 else 0
        need = self.max_tokens + PROMPT_OVERHEAD_TOKENS + MIN_PASSAGE_TOKENS + examples
        if self.llm_context_tokens < need:
            raise ValueError(
                f"RAG_LLM_CONTEXT_TOKENS={self.llm_context_tokens} is too small: RAG_MAX_TOKENS ({self.max_tokens}) + "
                f"the prompt ({PROMPT_OVERHEAD_TOKENS}) + one passage ({MIN_PASSAGE_TOKENS})"
                + (f" + prompt version 3's examples ({examples})" if examples else "") + f" need {need}")
        return self


@lru_cache
def get_settings() -> Settings:
    """Process-wide settings (cached: environment is read once). An invalid value is a ConfigError
    naming the environment variable, not a validation traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(settings_error(exc)) from None


def settings_error(exc: ValidationError, env_names: bool = True) -> str:
    """One line per invalid setting, by its environment variable name (or its field name, as
    ``--set KEY=VALUE`` takes it)."""
    lines = []
    for e in exc.errors():
        field_name = str(e["loc"][0]) if e["loc"] else ""
        name = ("RAG_" + field_name.upper() if env_names else field_name) if field_name else ""
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {msg}" if name else msg)
    return "invalid settings: " + "; ".join(lines)
