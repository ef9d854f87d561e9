"""Settings: one pydantic-settings class read from ``RAG_*`` environment variables (or ``.env``).

Get them through :func:`get_settings` (cached); tests and the API override them through
``app.dependency_overrides[get_settings]`` or by passing a ``Settings`` explicitly.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    reranker: str = Field("none", description="'none', a local CrossEncoder directory, or a model name.")
    rerank_top: int = Field(30, ge=1, le=500, description="Fused candidates the cross-encoder rescores.")
    rerank_weight: float = Field(
        1.0, ge=0, le=1, description="Final score = w * minmax(cross-encoder) + (1-w) * minmax(fused).")
    rerank_max_length: int = Field(256, ge=32, le=512)

    # --- HTTP service -----------------------------------------------------------------------
    api_keys: str = Field("", description="Comma-separated API keys; empty = no auth. Clients send "
                          "'Authorization: Bearer KEY'. /healthz stays open.")
    max_body_mb: float = Field(20.0, gt=0, description="Larger request bodies get 413.")

    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    # --- ingest limits ----------------------------------------------------------------------
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this are skipped.")
    keep_versions: int = Field(2, ge=1, description="Index versions kept on disk after a commit.")


@lru_cache
def get_settings() -> Settings:
    """Process-wide settings (cached: environment is read once)."""
    return Settings()
