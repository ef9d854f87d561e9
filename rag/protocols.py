"""One Protocol per swappable stage. Implementations are chosen by settings.

Constructors are cheap; models load lazily on first use (or explicitly via ``load()``), so
that the API can load them once in its lifespan and tests can share one per session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors; passages and queries may be encoded differently."""

    name: str
    dim: int
    max_tokens: int  # the model's input limit, special tokens and prompts included
    overhead: int  # tokens the model adds to every passage (special tokens, "passage: " prompt)
    # Hash of a local model's weights (None for packaged presets): a model retrained in place keeps
    # its name, and an index built with the old weights must not be searched with the new ones.
    fingerprint: str | None

    def load(self) -> None: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Content tokens of each text, without ``overhead``."""
        ...

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


@runtime_checkable
class Reranker(Protocol):
    """Scores (query, passage) pairs jointly; higher is more relevant."""

    name: str

    def load(self) -> None: ...

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """The model's scores (its own output activation), one per passage, in order."""
        ...

    def score_with_logits(self, query: str, passages: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(scores, raw logits): the interpolation may mix logits, which a sigmoid would squash."""
        ...
