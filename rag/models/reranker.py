"""Cross-encoder reranking (sentence-transformers ``CrossEncoder``).

No cross-encoder ships on PyPI, so the project trains its own (``rag train-reranker``) and ships
it with the package (``RAG_RERANKER=bundled``, the default: :mod:`rag.models.bundled`). Any local
directory works too, and ``hf:ORG/NAME`` loads one from the Hugging Face hub. ``make_reranker``
returns None for 'none' and for a configured directory that does not exist, with the reason, so
the service runs without reranking and says so instead of failing.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.errors import ConfigError
from rag.models import bundled
from rag.models.hf import HUB_PREFIX, ModelSource, load_cross_encoder, model_source

BUNDLED = "bundled"

PRECISIONS = ("float32", "bfloat16", "int8")


class CrossEncoderReranker:
    """Scores (query, passage) pairs jointly; higher is more relevant. Scores are the model's own
    output activation (sigmoid for a 1-logit head such as the project's: 0..1, where 0.5 is the
    training's zero "no answer" anchor)."""

    def __init__(self, name_or_path: str, max_length: int = 256, batch_size: int = 32,
                 threads: int | None = None, precision: str = "float32") -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown reranker precision {precision!r} (one of {', '.join(PRECISIONS)})")
        self.name = name_or_path
        self.max_length = max_length
        self.precision = precision
        self.batch_size = batch_size
        self.threads = threads
        self._model = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            if self.name == BUNDLED:
                source = ModelSource(str(bundled.verified_dir("reranker")), local=True)
            else:
                source = model_source(self.name, "reranker")
            model = load_cross_encoder(source, self.max_length, self.threads)
            if self.precision == "int8":
                import torch

                # Dynamic int8 quantisation of the Linear layers: weights int8, activations
                # quantised per batch. No extra runtime; the CPU matmuls dominate reranking.
                with warnings.catch_warnings():  # torch's own deprecation notice, once per load
                    warnings.simplefilter("ignore", UserWarning)
                    torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8,
                                                           inplace=True)
            self._model = model

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """The model's scores (its own activation of its logits) for ``passages``, in order."""
        return self.score_with_logits(query, passages)[0]

    def score_with_logits(self, query: str, passages: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(scores, logits). Scores are what users and the gate see (0..1 for a sigmoid head);
        logits are what the interpolation with the fused score may use (``rerank_score_space``):
        the sigmoid squashes confident scores together. For a model without an activation both
        are the same."""
        if not passages:
            empty = np.zeros(0, dtype=np.float32)
            return empty, empty
        self.load()
        import torch

        # bfloat16 autocast keeps float32 weights and runs the matmuls in bf16 (oneDNN), so scores
        # stay within a few hundredths of a logit of float32 while taking about half the time.
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bfloat16"
                    else contextlib.nullcontext())
        with autocast:
            raw = self._model.predict([(query, p) for p in passages], batch_size=self.batch_size,
                                      show_progress_bar=False, convert_to_numpy=True,
                                      activation_fn=torch.nn.Identity())
        logits = np.asarray(raw, dtype=np.float32).reshape(len(passages))
        with torch.inference_mode():
            scores = self._model.activation_fn(torch.from_numpy(logits.copy())).numpy()
        return np.asarray(scores, dtype=np.float32), logits


def make_reranker(setting: str, max_length: int = 256, threads: int | None = None, precision: str = "float32"
                  ) -> tuple[CrossEncoderReranker | None, str]:
    """(reranker or None, a one-line status for `rag info`, /readyz and eval reports). Not loaded yet."""
    if not setting or setting.lower() == "none":
        return None, "off (RAG_RERANKER=none)"
    tag = f", {precision}" if precision != "float32" else ""
    if setting == BUNDLED:
        card = bundled.describe("reranker")
        return (CrossEncoderReranker(BUNDLED, max_length, threads=threads, precision=precision),
                f"on (bundled {card}{tag})")
    if setting.startswith(HUB_PREFIX):
        return (CrossEncoderReranker(setting, max_length, threads=threads, precision=precision),
                f"on ({setting}, model hub{tag})")
    path = Path(setting).expanduser()
    if not path.is_dir():
        return None, f"off: no reranker at {path} (train one: rag train-reranker --out {path})"
    return CrossEncoderReranker(str(path), max_length, threads=threads, precision=precision), f"on ({path}{tag})"


def reranker_status(settings) -> str:
    """What ``make_reranker`` would say for these settings, without loading anything."""
    return make_reranker(settings.reranker, settings.rerank_max_length, settings.embed_threads,
                         settings.rerank_precision)[1]
