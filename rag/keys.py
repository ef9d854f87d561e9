"""Scoped API keys: who may read or write which collection, or administer the service.

Keys are random tokens shown once, when made; the key file keeps only their SHA-256 (a random
256-bit token needs no salt or slow hash: nothing short of the token hashes to the same value).
A presented key is hashed and compared with every stored hash in constant time. The file is
replaced atomically and re-read when it changes, so ``rag keys create`` or ``revoke`` next to a
running service takes effect at its next request.

Access levels grow: ``read`` (search, ask, list documents) < ``write`` (also add and delete
documents) < ``admin`` (every collection, creating and deleting collections and keys, metrics).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import ConfigError, InvalidRequestError, NotFoundError

READ, WRITE, ADMIN = "read", "write", "admin"
LEVELS = {READ: 1, WRITE: 2, ADMIN: 3}
PREFIX = "rag_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """What a request's key may do: a level per collection, or everything (admin)."""

    key_id: str
    admin: bool = False
    grants: tuple[tuple[str, str], ...] = ()  # (collection, level)

    def level(self, collection: str) -> int:
        if self.admin:
            return LEVELS[ADMIN]
        return max((LEVELS[lvl] for name, lvl in self.grants if name == collection), default=0)

    def can(self, level: str, collection: str) -> bool:
        return self.level(collection) >= LEVELS[level]


#: Requests when no key is configured at all: the service is open.
OPEN = Principal("open", admin=True)


@dataclass(frozen=True)
class KeyRecord:
    """A stored key: its id (safe to show and log), name, grants and the SHA-256 of the token."""

    id: str
    name: str
    sha256: str
    admin: bool = False
    grants: tuple[tuple[str, str], ...] = ()
    created_at: str = ""

    def principal(self) -> Principal:
        return Principal(self.id, self.admin, self.grants)

    def public(self) -> dict:
        """The record without its hash (what listings show)."""
        grants: dict[str, list[str]] = {READ: [], WRITE: []}
        for name, level in self.grants:
            grants[level].append(name)
        return {"id": self.id, "name": self.name, "admin": self.admin, "read": sorted(grants[READ]),
                "write": sorted(grants[WRITE]), "created_at": self.created_at}


def grants_of(read: list[str] | tuple[str, ...] = (), write: list[str] | tuple[str, ...] = ()
              ) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({(c, READ) for c in read} | {(c, WRITE) for c in write}))


@dataclass
class KeyStore:
    """The key file (JSON list of :class:`KeyRecord`) plus the admin keys given in settings."""

    path: Path
    admin_tokens: tuple[str, ...] = ()
    _records: tuple[KeyRecord, ...] = ()
    _stamp: tuple[float, int] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enabled(self) -> bool:
        """Whether requests need a key at all (no configured key: an open service)."""
        return bool(self.admin_tokens) or bool(self.records())

    def records(self) -> tuple[KeyRecord, ...]:
        """The stored keys, re-read when the file changed."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime, st.st_size)
        except FileNotFoundError:
            return ()
        with self._lock:
            if stamp != self._stamp:
                self._records, self._stamp = self._load(), stamp
            return self._records

    def authenticate(self, token: str) -> Principal | None:
        """The principal of ``token``, or None. Every candidate is compared (no early exit), in constant time."""
        if not token:
            return None
        found: Principal | None = None
        for admin in self.admin_tokens:
            if hmac.compare_digest(token.encode("utf-8"), admin.encode("utf-8")):
                found = Principal("settings", admin=True)
        hashed = digest(token).encode("ascii")
        for record in self.records():
            if hmac.compare_digest(hashed, record.sha256.encode("ascii")):
                found = record.principal()
        return found

    def create(self, name: str, read: list[str] = (), write: list[str] = (), admin: bool = False
               ) -> tuple[KeyRecord, str]:
        """A new key: (its record, the token, which is shown this once and never stored)."""
        if not (admin or read or write):
            raise InvalidRequestError("a key needs at least one grant: read or write on a collection, or admin")
        token = PREFIX + secrets.token_urlsafe(32)
        record = KeyRecord(id="k_" + secrets.token_hex(6), name=name or "", sha256=digest(token), admin=admin,
                           grants=grants_of(read, write),
                           created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        with self._lock:
            self._save((*self._load(), record))
        return record, token

    def revoke(self, key_id: str) -> KeyRecord:
        with self._lock:
            records = self._load()
            gone = [r for r in records if r.id == key_id]
            if not gone:
                raise NotFoundError(f"unknown key: {key_id}")
            self._save(tuple(r for r in records if r.id != key_id))
        return gone[0]

    def drop_collection(self, collection: str) -> None:
        """Remove a deleted collection's grants, so that a later collection of the same name starts unshared."""
        with self._lock:
            records = self._load()
            kept = tuple(KeyRecord(r.id, r.name, r.sha256, r.admin, tuple(g for g in r.grants if g[0] != collection),
                                   r.created_at) for r in records)
            if kept != records:
                self._save(kept)

    # -- the file ----------------------------------------------------------------------------
    def _load(self) -> tuple[KeyRecord, ...]:
        try:
            rows = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return ()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the key file {self.path}: {exc}") from exc
        return tuple(KeyRecord(r["id"], r.get("name", ""), r["sha256"], bool(r.get("admin")),
                               tuple((c, lvl) for c, lvl in r.get("grants", [])), r.get("created_at", ""))
                     for r in rows)

    def _save(self, records: tuple[KeyRecord, ...]) -> None:
        """Write the whole file to a temporary one (mode 0600), fsync, rename: never half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"id": r.id, "name": r.name, "sha256": r.sha256, "admin": r.admin,
                 "grants": [list(g) for g in r.grants], "created_at": r.created_at} for r in records]
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(rows, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._records, self._stamp = records, None
