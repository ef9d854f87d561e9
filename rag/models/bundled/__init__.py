"""Models that ship inside this package (``rag/models/bundled/NAME/``).

Each directory holds the weights (one ``model.safetensors``), the tokenizer and config files,
``MODEL_CARD.md`` and ``bundle.json`` (name, version, the SHA-256 of the weights). The digest is
checked once per process before the model is used, so that a truncated or altered file is one
clear error instead of a model that quietly scores wrong.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from rag.errors import ConfigError
from rag.models.gguf import sha256_of

__all__ = ["ROOT", "WEIGHTS", "describe", "directory", "manifest", "sha256_of", "verified_dir"]

ROOT = Path(__file__).resolve().parent
WEIGHTS = "model.safetensors"
_verified: set[str] = set()
_lock = threading.Lock()


def directory(name: str) -> Path:
    return ROOT / name


def manifest(name: str) -> dict:
    path = directory(name) / "bundle.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"bundled model {name!r} is missing or unreadable ({path}): {exc}") from None


def describe(name: str) -> str:
    """'reranker-minilm-l6 v1' style label for status lines."""
    m = manifest(name)
    return f"{m['name']} v{m['version']}"


def verified_dir(name: str) -> Path:
    """The bundled model's directory, after checking its weights against the recorded SHA-256."""
    with _lock:
        path = directory(name)
        if name in _verified:
            return path
        expected = manifest(name)["sha256"]
        weights = path / WEIGHTS
        if not weights.is_file():
            raise ConfigError(f"bundled model {name!r}: {weights} is missing (reinstall the package)")
        actual = sha256_of(weights)
        if actual != expected:
            raise ConfigError(f"bundled model {name!r}: {weights} has SHA-256 {actual}, expected {expected} "
                              "(corrupt or altered file; reinstall the package)")
        _verified.add(name)
        return path
