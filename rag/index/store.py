"""Reading a committed index version: its chunk store (SQLite), BM25 term matrix and FAISS index,
checked against its manifest (the directory layout: :mod:`rag.index`)."""

from __future__ import annotations

import json
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import EmbedderMismatchError, IndexCorruptError, IndexNotFoundError, InvalidRequestError
from rag.index.bm25 import BM25Index, TermMatrix
from rag.index.dense import DenseIndex
from rag.index.layout import SCHEMA_VERSION, current_version_dir
from rag.text import Tokenizer
from rag.types import Chunk, Filters

# The chunk store's tables (written by rag.index.writer, read here).
SCHEMA_SQL = """
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



def _open_chunks(file: Path) -> sqlite3.Connection:
    if not file.is_file():
        raise FileNotFoundError("missing")
    db = sqlite3.connect(f"file:{file}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    db.execute("SELECT count(*) FROM docs").fetchone()  # a damaged file fails here, not at the first query
    return db


def _read(version: Path, name: str, load):
    """``load()``, with any failure reported as the file it came from (one line, no traceback)."""
    try:
        return load()
    except IndexCorruptError:
        raise
    except Exception as exc:  # each reader fails its own way: OSError, BadZipFile, sqlite3, faiss RuntimeError
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[-1][:200]
        raise IndexCorruptError(f"cannot read {version / name} ({exc.__class__.__name__}: {first}); restore "
                                "the file or re-ingest with --rebuild") from exc


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


class ManifestFacts:
    """What every index backend reads off its manifest, and the embedder check (``where`` names the
    index in messages)."""

    manifest: dict[str, Any]
    where: Path | str

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
                f"index {self.where} was built with embedder {e['name']!r} ({e['dim']}-d); "
                f"the configured embedder is {name!r} ({dim}-d). Set RAG_EMBEDDER={e['name']} "
                "or re-ingest with --rebuild")
        if e.get("fingerprint") != fingerprint:
            raise EmbedderMismatchError(
                f"index {self.where}: {fingerprint_mismatch(name, e.get('fingerprint'), fingerprint)}")


class Index(ManifestFacts):
    """A committed index version, loaded read-only. Thread-safe for concurrent queries."""

    remote = False  # searches run in this process

    def __init__(self, path: Path, manifest: dict[str, Any], db: sqlite3.Connection, bm25: BM25Index,
                 dense: DenseIndex, terms: TermMatrix) -> None:
        self.path = path
        self.where = path.parent
        self.manifest = manifest
        self._db = db
        self._db_lock = threading.Lock()
        # A sqlite3 connection sits in a reference cycle with its own statement cache, so without
        # this it would stay open (file descriptor, page cache) until a full garbage collection: a
        # server that swaps in many versions would hold every replaced one. The Index itself is
        # freed as soon as the last query using it ends, and this closes its connection then.
        self._closer = weakref.finalize(self, db.close)
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
        p, d = manifest.get("bm25", {}), manifest.get("dense", {})
        db = _read(path, "chunks.sqlite", lambda: _open_chunks(path / "chunks.sqlite"))
        terms = _read(path, "bm25.npz", lambda: TermMatrix.load(path))
        bm25 = _read(path, "manifest.json", lambda: BM25Index(terms, p["k1"], p["b"], p["epsilon"]))
        dense = _read(path, "dense.faiss",
                      lambda: DenseIndex.load(path / "dense.faiss", d["kind"], d.get("ef_search", 128)))
        counts = _read(path, "manifest.json", lambda: {"chunks": int(manifest["counts"]["chunks"])})
        stored = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        for name, n in (("dense.faiss", dense.ntotal), ("bm25.npz", bm25.n_docs), ("chunks.sqlite", stored)):
            if n != counts["chunks"]:
                raise IndexCorruptError(f"{path / name} holds {n} chunks, its manifest {counts['chunks']}: the "
                                        "version is damaged; restore it or re-ingest with --rebuild")
        return cls(path, manifest, db, bm25, dense, terms)

    def close(self) -> None:
        with self._db_lock:
            self._closer()

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


