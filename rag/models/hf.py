"""The one loader for Hugging Face weights (sentence-transformers bi- and cross-encoders).

Offline by construction: a model is a local directory unless its name says ``hf:ORG/NAME``. A
local directory loads with ``local_files_only=True`` whatever the environment says, so that a
missing file is one clear error instead of retries against a model hub; a path that does not
exist is never looked up as a hub id.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

HUB_PREFIX = "hf:"
_torch_lock = threading.Lock()


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: a local directory, or a hub id (``hf:`` names only)."""

    location: str
    local: bool

    @property
    def label(self) -> str:
        return self.location if self.local else f"{HUB_PREFIX}{self.location}"


def model_source(name: str, what: str = "model") -> ModelSource:
    """``hf:ORG/NAME`` is a hub model; anything else must be an existing local directory."""
    if name.startswith(HUB_PREFIX):
        return ModelSource(name[len(HUB_PREFIX):], local=False)
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ConfigError(f"no {what} directory at {path} (a model from the Hugging Face hub is written "
                          f"{HUB_PREFIX}ORG/NAME)")
    return ModelSource(str(path), local=True)


def is_local_dir(name: str) -> bool:
    return not name.startswith(HUB_PREFIX) and Path(name).expanduser().is_dir()


def _quiet_and_threads(threads: int | None) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars on every load are noise
    if threads:
        with _torch_lock:
            torch.set_num_threads(threads)


def load_sentence_transformer(source: ModelSource, threads: int | None = None, **kwargs: Any):
    """A ``SentenceTransformer`` on CPU; errors become one ConfigError line."""
    try:
        from sentence_transformers import SentenceTransformer

        _quiet_and_threads(threads)
        return SentenceTransformer(source.location, device="cpu", local_files_only=source.local, **kwargs)
    except Exception as exc:  # many failure types: missing files, no network, bad config
        raise ConfigError(f"cannot load {source.label}: {_first_line(exc)}") from exc


def load_cross_encoder(source: ModelSource, max_length: int, threads: int | None = None, **kwargs: Any):
    """A ``CrossEncoder`` on CPU in float32 (weights stored in half precision are widened);
    errors become one ConfigError line."""
    try:
        from sentence_transformers import CrossEncoder

        _quiet_and_threads(threads)
        model = CrossEncoder(source.location, max_length=max_length, device="cpu", local_files_only=source.local,
                             **kwargs)
        model.model.float()
        return model
    except Exception as exc:
        raise ConfigError(f"cannot load {source.label}: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0][:300]
