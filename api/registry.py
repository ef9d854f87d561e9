"""The collections a service hosts: one :class:`Engine` per collection, sharing one set of models,
and the scoped API keys that decide who reaches which."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from api.engine import Engine, Models, ready_info
from rag.collections import DEFAULT, Collection, Collections
from rag.config import Settings
from rag.errors import NotFoundError, RagError
from rag.keys import KeyStore, Principal

log = logging.getLogger("rag.api")


class Registry:
    """Engines by collection name, opened on first use (or at start-up for those that exist) and
    dropped when their collection is deleted; every lookup checks the collection on disk, so one
    made or deleted by another process (``rag collections``) is seen at once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.collections = Collections(settings)
        self.models = Models(settings)
        self.default = Engine(settings, self.models, DEFAULT)
        self.keys = KeyStore(Path(settings.keys_file or self.collections.root / "keys.json"),
                             tuple(settings.api_key_list()))
        self._engines: dict[str, tuple[str, Engine]] = {DEFAULT: ("", self.default)}
        self._lock = threading.Lock()

    def load(self) -> None:
        """Start-up: the models and the default collection, then every other collection's index."""
        self.default.load()
        for name in self.collections.names():
            try:
                self.engine(name)
            except RagError as exc:
                log.warning("collection %s: %s", name, exc)

    def engine(self, name: str) -> Engine:
        """The engine of collection ``name`` (:class:`NotFoundError` when there is none)."""
        collection = self.collections.get(name)
        if name == DEFAULT:
            return self.default
        with self._lock:
            created, engine = self._engines.get(name, ("", None))
            if engine is None or created != collection.created_at:  # new, or deleted and made again
                engine = Engine(collection.settings(self.settings), self.models, name)
                engine.load()
                self._engines[name] = (collection.created_at, engine)
        return engine

    def create(self, name: str, overrides: dict | None = None) -> Collection:
        collection = self.collections.create(name, overrides)
        self.engine(name)
        return collection

    def delete(self, name: str) -> None:
        """Delete a collection (after its running write, if any), its engine and every key's grant on it."""
        engine = self.engine(name)
        engine.deleted = True  # writes queued behind the running one fail instead of writing
        try:
            with engine.write_lock:
                self.collections.delete(name, lock_wait_s=self.settings.write_lock_wait_s)
        except BaseException:
            engine.deleted = False
            raise
        with self._lock:
            self._engines.pop(name, None)
        engine.close()
        self.keys.drop_collection(name)

    def visible(self, principal: Principal) -> list[str]:
        """The collections ``principal`` may read (the others are as if they did not exist)."""
        return [n for n in self.collections.names() if principal.can("read", n)]

    def describe(self, name: str) -> dict:
        collection = self.collections.get(name)
        engine = self.engine(name)
        info = ready_info(engine)
        langs = engine.retriever.index.manifest.get("languages") if engine.retriever is not None else None
        return {"name": name, "created_at": collection.created_at or None, "settings": collection.overrides,
                "documents": info.get("documents", 0), "chunks": info.get("chunks", 0),
                "index_version": info.get("index_version"), "embedder": info.get("embedder"),
                "languages": langs, "ready": info["ready"], "detail": info["detail"]}

    def close(self) -> None:
        for _, engine in list(self._engines.values()):
            engine.close()


def missing(name: str) -> NotFoundError:
    """The one answer for a collection that does not exist and for one a key may not see."""
    return NotFoundError(f"unknown collection: {name}")
