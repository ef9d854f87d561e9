"""Named collections: several document sets, each its own index directory, in one service.

A collection is a directory under ``RAG_COLLECTIONS_DIR`` holding ``collection.json`` (its name,
creation time and the settings it overrides) and, once documents arrive, the index files
(:mod:`rag.index`). The collection ``default`` is ``RAG_INDEX_DIR`` itself, so a single-index
set-up is a single-collection one with nothing to create.

Each collection chooses its own embedder (``auto`` looks at its documents' languages), keeps its
own index versions and may set its own retrieval and gate settings (:data:`OVERRIDABLE`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.errors import ConfigError, InvalidRequestError, NotFoundError
from rag.index.lock import IndexLock

DEFAULT = "default"
META = "collection.json"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

#: Settings a collection may set for itself (the rest are the service's).
OVERRIDABLE = frozenset({
    "embedder", "chunk_tokens", "chunk_overlap", "dense_index", "retrieval_mode", "candidates", "top_k", "fusion",
    "rrf_k", "fusion_alpha", "rerank_top", "rerank_weight", "context_passages", "gate_bm25", "gate_bm25_lang",
    "gate_dense", "gate_rerank", "grounding", "passage_text",
})


@dataclass(frozen=True)
class Collection:
    """A collection's name, directory and own settings (overrides of the service's)."""

    name: str
    path: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    def settings(self, base: Settings) -> Settings:
        """The service's settings with this collection's overrides and index directory."""
        merged = base.model_dump() | self.overrides | {"index_dir": self.path}
        return type(base).model_validate(merged)


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise InvalidRequestError(f"invalid collection name {name!r}: 1-63 characters of a-z, 0-9, '-' and '_', "
                                  "starting with a letter or digit")
    return name


def check_overrides(base: Settings, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` validated as settings (unknown or service-wide names and bad values are errors)."""
    unknown = sorted(set(overrides) - OVERRIDABLE)
    if unknown:
        raise InvalidRequestError(f"settings a collection cannot set: {', '.join(unknown)} (it may set: "
                                  f"{', '.join(sorted(OVERRIDABLE))})")
    try:
        type(base).model_validate(base.model_dump() | overrides)
    except Exception as exc:  # pydantic's ValidationError, or the context check
        raise InvalidRequestError(f"invalid collection settings: {exc}".splitlines()[0]) from exc
    return dict(overrides)


class Collections:
    """The collections of one service (a directory of directories). Cheap to build; reads the
    disk on each call, so collections made by another process (``rag collections create``) are seen."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings
        self.default_dir = Path(settings.index_dir)
        self.root = Path(settings.collections_dir) if settings.collections_dir else self.default_dir.parent

    def path(self, name: str) -> Path:
        return self.default_dir if name == DEFAULT else self.root / check_name(name)

    def get(self, name: str) -> Collection:
        """The collection ``name`` (:class:`NotFoundError` when there is none)."""
        if name == DEFAULT:
            return self._read(DEFAULT, self.default_dir, must_exist=False)
        path = self.path(name)
        if not (path / META).is_file():
            raise NotFoundError(f"unknown collection: {name}")
        return self._read(name, path)

    def names(self) -> list[str]:
        found = {p.parent.name for p in self.root.glob(f"*/{META}")} if self.root.is_dir() else set()
        found = {n for n in found if NAME.match(n)}
        found.discard(self.default_dir.name if self.default_dir.parent == self.root else "")
        return [DEFAULT, *sorted(found - {DEFAULT})]

    def list(self) -> list[Collection]:
        out = []
        for name in self.names():
            try:
                out.append(self.get(name))
            except NotFoundError:  # deleted meanwhile
                continue
        return out

    def create(self, name: str, overrides: dict[str, Any] | None = None) -> Collection:
        check_name(name)
        if name == DEFAULT or (self.root / name) == self.default_dir:
            raise InvalidRequestError(f"collection {name!r} exists already (it is the default one)")
        overrides = check_overrides(self.base, overrides or {})
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        meta = path / META
        try:  # O_EXCL: of two concurrent creates, one wins and the other is told
            fd = os.open(meta, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise InvalidRequestError(f"collection {name!r} exists already") from None
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"name": name, "created_at": created, "settings": overrides}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        return Collection(name, path, overrides, created)

    def delete(self, name: str, lock_wait_s: float = 0.0) -> None:
        """Remove a collection and its index (after any writer on it has finished)."""
        if name == DEFAULT:
            raise InvalidRequestError("the default collection cannot be deleted (delete its documents instead)")
        collection = self.get(name)
        with IndexLock(collection.path, wait_s=lock_wait_s):
            (collection.path / META).unlink()  # from here on the collection is gone for every reader
        shutil.rmtree(collection.path, ignore_errors=True)

    def _read(self, name: str, path: Path, must_exist: bool = True) -> Collection:
        meta = path / META
        if not meta.is_file():
            if must_exist:
                raise NotFoundError(f"unknown collection: {name}")
            return Collection(name, path)
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {meta}: {exc}") from exc
        return Collection(name, path, dict(data.get("settings") or {}), data.get("created_at", ""))
