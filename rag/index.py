"""The on-disk index: a directory of immutable versions plus a ``CURRENT`` pointer.

Layout::

    DIR/
      CURRENT              name of the committed version, e.g. "v000003" (replaced atomically)
      .lock                flock'ed by the one writer; readers never take it
      v000003/
        manifest.json      schema version, embedder, tokenizer, BM25/chunking/dense params, counts
        chunks.sqlite      documents and chunks (text, offsets, metadata)
        dense.faiss        FAISS index keyed by chunk id
        bm25.npz           term-frequency CSR matrix + row -> chunk id map (numpy, no pickle)
        vocab.json         BM25 vocabulary

A writer builds a new version in a temporary directory, fsyncs it, renames it into place and
only then replaces ``CURRENT``. A writer killed at any moment therefore leaves the previous
version committed and loadable; leftovers are removed by the next writer.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rag.bm25 import BM25Index, TermMatrix
from rag.dense import DenseIndex
from rag.errors import (
    EmbedderMismatchError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    InvalidRequestError,
)
from rag.text import Tokenizer
from rag.types import Chunk, Filters

SCHEMA_VERSION = 1
CURRENT = "CURRENT"
LOCK = ".lock"
_SCHEMA = """
CREATE TABLE docs (
    doc_id TEXT PRIMARY KEY, title TEXT, source TEXT, format TEXT, content_hash TEXT,
    n_chunks INTEGER, n_chars INTEGER, lang TEXT, metadata TEXT, ingested_at TEXT
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, chunk_id TEXT UNIQUE NOT NULL, doc_id TEXT NOT NULL, ord INTEGER,
    title TEXT, source TEXT, heading TEXT, start INTEGER, "end" INTEGER, n_tokens INTEGER,
    lang TEXT, text TEXT
);
CREATE INDEX chunks_doc ON chunks(doc_id);
"""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for child in path.iterdir():
        with open(child, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(path)


def current_version_dir(index_dir: Path) -> Path | None:
    """The committed version's directory, or None when nothing was ever committed."""
    try:
        name = (Path(index_dir) / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    path = Path(index_dir) / name
    return path if name and path.is_dir() else None


class IndexLock:
    """Exclusive writer lock (``flock``): released by the kernel even if the writer is killed."""

    def __init__(self, index_dir: Path) -> None:
        self.path = Path(index_dir) / LOCK
        self._fh = None

    def __enter__(self) -> "IndexLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise IndexLockedError(
                f"index {self.path.parent} is being written by {holder}; wait for it to finish "
                "(readers are not affected)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {now_iso()}")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def _row_to_chunk(row: sqlite3.Row | tuple) -> Chunk:
    (_id, chunk_id, doc_id, _ord, title, source, heading, start, end, n_tokens, lang, text) = row
    return Chunk(chunk_id=chunk_id, doc_id=doc_id, text=text, title=title or "", source=source or "",
                 heading=heading or "", start=start, end=end, n_tokens=n_tokens, lang=lang or "en")


def fingerprint_mismatch(name: str, built: str | None, now: str | None) -> str:
    """Why an index and the embedder's current weights disagree (same name, other weights)."""
    if built is None:
        return (f"built before embedder {name!r}'s weights were fingerprinted, so they cannot be checked "
                "against the current ones; re-ingest with --rebuild")
    return (f"built with other weights of embedder {name!r} (fingerprint {built} vs {now}: retrained "
            "since?); re-ingest with --rebuild")


class Index:
    """A committed index version, loaded read-only. Thread-safe for concurrent queries."""

    def __init__(self, path: Path, manifest: dict[str, Any], db: sqlite3.Connection, bm25: BM25Index,
                 dense: DenseIndex, terms: TermMatrix) -> None:
        self.path = path
        self.manifest = manifest
        self._db = db
        self._db_lock = threading.Lock()
        self.bm25 = bm25
        self.dense = dense
        self.terms = terms
        self.tokenizer = Tokenizer.from_config(manifest["tokenizer"])

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def open(cls, index_dir: Path | str, version_dir: Path | None = None) -> "Index":
        index_dir = Path(index_dir)
        path = version_dir or current_version_dir(index_dir)
        if path is None:
            raise IndexNotFoundError(f"no index at {index_dir} (run `rag ingest PATH --index {index_dir}`)")
        try:
            manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexCorruptError(f"cannot read {path / 'manifest.json'}: {exc}") from exc
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise IndexCorruptError(
                f"index schema {manifest.get('schema_version')} is not {SCHEMA_VERSION}; re-ingest with --rebuild")
        try:
            db = sqlite3.connect(f"file:{path / 'chunks.sqlite'}?mode=ro&immutable=1", uri=True,
                                 check_same_thread=False)
            terms = TermMatrix.load(path)
            p = manifest["bm25"]
            bm25 = BM25Index(terms, p["k1"], p["b"], p["epsilon"])
            d = manifest["dense"]
            dense = DenseIndex.load(path / "dense.faiss", d["kind"], d.get("ef_search", 128))
        except (OSError, ValueError, KeyError, sqlite3.Error, RuntimeError) as exc:
            raise IndexCorruptError(f"cannot load index version {path}: {exc}") from exc
        counts = manifest["counts"]
        if dense.ntotal != counts["chunks"] or bm25.n_docs != counts["chunks"]:
            raise IndexCorruptError(f"index version {path} is inconsistent with its manifest")
        return cls(path, manifest, db, bm25, dense, terms)

    def close(self) -> None:
        with self._db_lock:
            self._db.close()

    # -- properties -------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def embedder_name(self) -> str:
        return self.manifest["embedder"]["name"]

    @property
    def n_chunks(self) -> int:
        return int(self.manifest["counts"]["chunks"])

    def check_embedder(self, name: str, dim: int, fingerprint: str | None = None) -> None:
        """Raise unless queries embedded by ``name``/``dim`` are comparable with this index (and,
        for a local model, unless its weights are the ones the index was built with)."""
        e = self.manifest["embedder"]
        if e["name"] != name or int(e["dim"]) != int(dim):
            raise EmbedderMismatchError(
                f"index {self.path.parent} was built with embedder {e['name']!r} ({e['dim']}-d); "
                f"the configured embedder is {name!r} ({dim}-d). Set RAG_EMBEDDER={e['name']} "
                "or re-ingest with --rebuild")
        if e.get("fingerprint") != fingerprint:
            raise EmbedderMismatchError(
                f"index {self.path.parent}: {fingerprint_mismatch(name, e.get('fingerprint'), fingerprint)}")

    # -- chunk store ------------------------------------------------------------------------
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._db_lock:
            return self._db.execute(sql, params).fetchall()

    def chunks_by_ids(self, ids: Iterable[int]) -> dict[int, Chunk]:
        ids = [int(i) for i in ids]
        out: dict[int, Chunk] = {}
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            rows = self._query(f"SELECT * FROM chunks WHERE id IN ({','.join('?' * len(part))})", part)
            out.update({row[0]: _row_to_chunk(row) for row in rows})
        return out

    def chunk_ids_of_docs(self, doc_ids: Iterable[str]) -> list[int]:
        doc_ids = list(doc_ids)
        out: list[int] = []
        for start in range(0, len(doc_ids), 500):
            part = doc_ids[start:start + 500]
            out += [r[0] for r in self._query(
                f"SELECT id FROM chunks WHERE doc_id IN ({','.join('?' * len(part))})", part)]
        return out

    def doc_hashes(self) -> dict[str, str]:
        return dict(self._query("SELECT doc_id, content_hash FROM docs"))

    def documents(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        rows = self._query("SELECT doc_id, title, source, format, n_chunks, n_chars, lang, metadata, ingested_at "
                           "FROM docs ORDER BY doc_id LIMIT ? OFFSET ?", (limit, offset))
        keys = ("doc_id", "title", "source", "format", "n_chunks", "n_chars", "lang", "metadata", "ingested_at")
        docs = [dict(zip(keys, r)) for r in rows]
        for d in docs:
            d["metadata"] = json.loads(d["metadata"] or "{}")
        return docs

    def metadata_keys(self) -> set[str]:
        """Every metadata field some document has (filters on other fields are errors)."""
        if not hasattr(self, "_metadata_keys"):
            rows = self._query("SELECT DISTINCT key FROM docs, json_each(docs.metadata)")
            self._metadata_keys = {r[0] for r in rows}
        return self._metadata_keys

    def allowed_chunk_ids(self, filters: Filters) -> np.ndarray:
        """Chunk ids of the documents that pass ``filters`` (sorted)."""
        unknown = [k for k, _ in filters.metadata if k not in self.metadata_keys()]
        if unknown:
            known = ", ".join(sorted(self.metadata_keys())) or "none"
            raise InvalidRequestError(f"unknown metadata filter field(s): {', '.join(unknown)} (known: {known})")
        where, params = [], []
        if filters.doc_ids:
            where.append(f"d.doc_id IN ({','.join('?' * len(filters.doc_ids))})")
            params += list(filters.doc_ids)
        if filters.source:
            where.append("d.source GLOB ?")
            params.append(filters.source)
        for key, value in filters.metadata:
            where.append("CAST(json_extract(d.metadata, ?) AS TEXT) = ?")
            params += [f'$."{key}"', str(value)]
        sql = "SELECT c.id FROM chunks c JOIN docs d ON d.doc_id = c.doc_id"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return np.asarray(sorted(r[0] for r in self._query(sql, params)), dtype=np.int64)

    def disk_bytes(self) -> dict[str, int]:
        return {p.name: p.stat().st_size for p in sorted(self.path.iterdir())}


@dataclass
class NewDoc:
    """A document row to insert (its chunks come separately)."""

    doc_id: str
    title: str
    source: str
    format: str
    content_hash: str
    n_chunks: int
    n_chars: int
    lang: str
    metadata: dict[str, Any]


def write_version(index_dir: Path, base: Index | None, manifest: dict[str, Any], remove_doc_ids: Sequence[str],
                  new_docs: Sequence[NewDoc], new_chunks: Sequence[Chunk], vectors: np.ndarray,
                  tokens: Sequence[Sequence[str]], dense_params: dict[str, Any], keep_versions: int = 2,
                  crash_hook: Any = None) -> Path:
    """Build and atomically commit the next version. The caller must hold :class:`IndexLock`.

    ``manifest`` carries the index-shaping settings; counts, version and times are filled here.
    ``crash_hook(stage)`` is called between steps (tests use it to die at chosen moments).
    """
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    hook = crash_hook or (lambda stage: None)
    version = (base.version + 1) if base else _next_version_number(index_dir)
    tmp = index_dir / f".tmp-v{version:06d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    hook("start")

    # 1. chunk store: copy the previous version's database and apply the change in one transaction.
    db_path = tmp / "chunks.sqlite"
    remove_chunk_ids = base.chunk_ids_of_docs(remove_doc_ids) if base else []
    if base:
        shutil.copyfile(base.path / "chunks.sqlite", db_path)
        db = sqlite3.connect(db_path)
    else:
        db = sqlite3.connect(db_path)
        db.executescript(_SCHEMA)
    next_id = int(base.manifest["next_chunk_id"]) if base else 0
    new_ids = np.arange(next_id, next_id + len(new_chunks), dtype=np.int64)
    ingested_at = now_iso()
    with db:
        for start in range(0, len(remove_doc_ids), 500):
            part = list(remove_doc_ids[start:start + 500])
            marks = ",".join("?" * len(part))
            db.execute(f"DELETE FROM chunks WHERE doc_id IN ({marks})", part)
            db.execute(f"DELETE FROM docs WHERE doc_id IN ({marks})", part)
        db.executemany("INSERT INTO docs VALUES (?,?,?,?,?,?,?,?,?,?)", [
            (d.doc_id, d.title, d.source, d.format, d.content_hash, d.n_chunks, d.n_chars, d.lang,
             json.dumps(d.metadata, ensure_ascii=False), ingested_at) for d in new_docs])
        db.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", [
            (int(i), c.chunk_id, c.doc_id, int(c.chunk_id.rsplit("#", 1)[-1]), c.title, c.source, c.heading,
             c.start, c.end, c.n_tokens, c.lang, c.text) for i, c in zip(new_ids, new_chunks)])
    n_docs = db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
    n_chunks = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    langs = dict(db.execute("SELECT lang, COUNT(*) FROM chunks GROUP BY lang").fetchall())
    if remove_chunk_ids:
        db.execute("VACUUM")  # the copied file would otherwise keep the deleted pages
    db.close()
    hook("sqlite")

    # 2. BM25 term matrix and 3. dense vectors.
    terms = (base.terms if base else TermMatrix.empty()).updated(remove_chunk_ids, new_ids, tokens)
    terms.save(tmp)
    hook("bm25")
    if base:
        dense = base.dense.updated(remove_chunk_ids, new_ids, vectors,
                                   dense_params.get("hnsw_m", 32), dense_params.get("ef_construction", 200))
    else:
        dense = DenseIndex.create(int(manifest["embedder"]["dim"]), dense_params["kind"],
                                  dense_params.get("hnsw_m", 32), dense_params.get("ef_construction", 200),
                                  dense_params.get("ef_search", 128))
        dense = dense.updated([], new_ids, vectors)
    dense.save(tmp / "dense.faiss")
    hook("dense")
    if dense.ntotal != n_chunks or terms.n_rows != n_chunks:
        raise IndexCorruptError(f"internal error: {n_chunks} chunks but {dense.ntotal} vectors, "
                                f"{terms.n_rows} BM25 rows")

    # 4. manifest, then make it durable and visible.
    created = base.manifest["created_at"] if base else now_iso()
    full = dict(manifest)
    full.update({
        "schema_version": SCHEMA_VERSION,
        "version": version,
        "created_at": created,
        "updated_at": now_iso(),
        "next_chunk_id": int(next_id + len(new_chunks)),
        "dense": dict(dense_params),
        "counts": {"documents": int(n_docs), "chunks": int(n_chunks), "vocabulary": len(terms.vocab)},
        "languages": {k: int(v) for k, v in sorted(langs.items())},
    })
    full["files"] = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    with open(tmp / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(full, fh, indent=2, ensure_ascii=False)
    _fsync_tree(tmp)
    hook("fsync")
    final = index_dir / f"v{version:06d}"
    if final.exists():  # left by a writer that died after its rename but before CURRENT moved
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(index_dir)
    hook("renamed")
    pointer = index_dir / f".{CURRENT}.tmp"
    with open(pointer, "w") as fh:
        fh.write(final.name)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(pointer, index_dir / CURRENT)
    _fsync_dir(index_dir)
    hook("committed")
    collect_garbage(index_dir, keep_versions)
    return final


def _next_version_number(index_dir: Path) -> int:
    nums = [int(p.name[1:]) for p in index_dir.glob("v[0-9]*") if p.name[1:].isdigit()]
    return max(nums, default=0) + 1


def collect_garbage(index_dir: Path, keep: int) -> None:
    """Remove temporary directories and all but the newest ``keep`` versions (writer only).

    Older versions stay for a while because a reader may have just read ``CURRENT``.
    """
    current = current_version_dir(index_dir)
    for tmp in index_dir.glob(".tmp-v*"):
        shutil.rmtree(tmp, ignore_errors=True)
    versions = sorted(p for p in index_dir.glob("v[0-9]*") if p.is_dir())
    if current is not None:
        # Versions newer than CURRENT were never committed (a writer died after renaming).
        for p in versions:
            if p.name > current.name:
                shutil.rmtree(p, ignore_errors=True)
        versions = [p for p in versions if p.name <= current.name]
    for p in versions[:-keep] if keep else versions:
        if current is None or p != current:
            shutil.rmtree(p, ignore_errors=True)
