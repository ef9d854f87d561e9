"""Writing the next index version: the files, fsync, rename, then the ``CURRENT`` pointer.

A writer builds a new version in a temporary directory, fsyncs it, renames it into place and
only then replaces ``CURRENT``. A writer killed at any moment therefore leaves the previous
version committed and loadable; leftovers are removed by the next writer (:func:`collect_garbage`).
The caller holds :class:`rag.index.lock.IndexLock` throughout.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexCorruptError, IndexWriteError
from rag.index.bm25 import TermMatrix
from rag.index.dense import DenseIndex
from rag.index.layout import CURRENT, SCHEMA_VERSION, current_version_dir, fsync_dir, fsync_tree, now_iso
from rag.index.store import SCHEMA_SQL, Index
from rag.types import Chunk

log = logging.getLogger("rag.index")


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


@dataclass(frozen=True)
class Change:
    """What the next version changes relative to its base: documents removed, documents and
    chunks added (with their vectors and BM25 tokens)."""

    remove_doc_ids: Sequence[str]
    new_docs: Sequence[NewDoc]
    new_chunks: Sequence[Chunk]
    vectors: np.ndarray
    tokens: Sequence[Sequence[str]]


@dataclass(frozen=True)
class _StoreCounts:
    documents: int
    chunks: int
    languages: dict[str, int]


def write_version(index_dir: Path, base: Index | None, manifest: dict[str, Any], remove_doc_ids: Sequence[str],
                  new_docs: Sequence[NewDoc], new_chunks: Sequence[Chunk], vectors: np.ndarray,
                  tokens: Sequence[Sequence[str]], dense_params: dict[str, Any], keep_versions: int = 2,
                  crash_hook: Callable[[str], None] | None = None) -> Path:
    """Build and atomically commit the next version; returns its directory.

    ``manifest`` carries the index-shaping settings; counts, version and times are filled here.
    ``crash_hook(stage)`` is called between steps (tests use it to die at chosen moments).
    """
    index_dir = Path(index_dir)
    hook = crash_hook or (lambda stage: None)
    change = Change(remove_doc_ids, new_docs, new_chunks, vectors, tokens)
    version = (base.version + 1) if base else _next_version_number(index_dir)
    tmp = index_dir / f".tmp-v{version:06d}-{os.getpid()}"
    try:
        final = _build_and_commit(index_dir, tmp, base, manifest, change, version, dense_params, hook)
    except (OSError, sqlite3.Error, RuntimeError) as exc:  # disk full, read-only, faiss cannot write
        shutil.rmtree(tmp, ignore_errors=True)
        kept = f"version {base.version} is still the committed one" if base else "nothing was committed"
        raise IndexWriteError(f"cannot write index version {version} in {index_dir} "
                              f"({exc.__class__.__name__}: {exc}); {kept}") from exc
    try:
        collect_garbage(index_dir, keep_versions)
    except OSError as exc:  # the commit stands; old versions are removed by a later run
        log.warning("could not remove old index versions in %s: %s", index_dir, exc)
    return final


def _build_and_commit(index_dir: Path, tmp: Path, base: Index | None, manifest: dict[str, Any], change: Change,
                      version: int, dense_params: dict[str, Any], hook: Callable[[str], None]) -> Path:
    """Write every file of ``version`` into ``tmp``, make it durable, rename it into place and point
    CURRENT at it (the commit)."""
    new_chunks = change.new_chunks
    _fresh_tmp_dir(tmp)
    hook("start")
    first_id = int(base.manifest["next_chunk_id"]) if base else 0
    new_ids = np.arange(first_id, first_id + len(new_chunks), dtype=np.int64)
    removed_ids = base.chunk_ids_of_docs(change.remove_doc_ids) if base else []
    counts = _write_chunk_store(tmp, base, change, new_ids, vacuum=bool(removed_ids))
    hook("sqlite")
    terms = (base.terms if base else TermMatrix.empty()).updated(removed_ids, new_ids, change.tokens)
    terms.save(tmp)
    hook("bm25")
    dense = _updated_dense(base, manifest, dense_params, removed_ids, new_ids, change.vectors)
    dense.save(tmp / "dense.faiss")
    hook("dense")
    if dense.ntotal != counts.chunks or terms.n_rows != counts.chunks:
        raise IndexCorruptError(f"internal error: {counts.chunks} chunks but {dense.ntotal} vectors, "
                                f"{terms.n_rows} BM25 rows")
    full = _full_manifest(manifest, base, version, first_id + len(new_chunks), dense_params, counts, len(terms.vocab))
    _write_manifest(tmp, full)
    fsync_tree(tmp)
    hook("fsync")
    final = _rename_into_place(index_dir, tmp, version)
    hook("renamed")
    _point_current_at(index_dir, final)
    hook("committed")
    return final


def _fresh_tmp_dir(tmp: Path) -> None:
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()


def _write_chunk_store(tmp: Path, base: Index | None, change: Change, new_ids: np.ndarray,
                       vacuum: bool) -> _StoreCounts:
    """Copy the previous version's database and apply the change in one transaction."""
    db_path = tmp / "chunks.sqlite"
    if base:
        shutil.copyfile(base.path / "chunks.sqlite", db_path)
        db = sqlite3.connect(db_path)
    else:
        db = sqlite3.connect(db_path)
        db.executescript(SCHEMA_SQL)
    ingested_at = now_iso()
    with db:
        for start in range(0, len(change.remove_doc_ids), 500):
            part = list(change.remove_doc_ids[start:start + 500])
            marks = ",".join("?" * len(part))
            db.execute(f"DELETE FROM chunks WHERE doc_id IN ({marks})", part)
            db.execute(f"DELETE FROM docs WHERE doc_id IN ({marks})", part)
        db.executemany("INSERT INTO docs VALUES (?,?,?,?,?,?,?,?,?,?)", [
            (d.doc_id, d.title, d.source, d.format, d.content_hash, d.n_chunks, d.n_chars, d.lang,
             json.dumps(d.metadata, ensure_ascii=False), ingested_at) for d in change.new_docs])
        db.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", [
            (int(i), c.chunk_id, c.doc_id, int(c.chunk_id.rsplit("#", 1)[-1]), c.title, c.source, c.heading,
             c.start, c.end, c.n_tokens, c.lang, c.text) for i, c in zip(new_ids, change.new_chunks)])
    counts = _StoreCounts(db.execute("SELECT COUNT(*) FROM docs").fetchone()[0],
                          db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0],
                          dict(db.execute("SELECT lang, COUNT(*) FROM chunks GROUP BY lang").fetchall()))
    if vacuum:
        db.execute("VACUUM")  # the copied file would otherwise keep the deleted pages
    db.close()
    return counts


def _updated_dense(base: Index | None, manifest: dict[str, Any], dense_params: dict[str, Any],
                   removed_ids: Sequence[int], new_ids: np.ndarray, vectors: np.ndarray) -> DenseIndex:
    m, ef_c = dense_params.get("hnsw_m", 32), dense_params.get("ef_construction", 200)
    if base:
        return base.dense.updated(removed_ids, new_ids, vectors, m, ef_c)
    dense = DenseIndex.create(int(manifest["embedder"]["dim"]), dense_params["kind"], m, ef_c,
                              dense_params.get("ef_search", 128))
    return dense.updated([], new_ids, vectors)


def _full_manifest(manifest: dict[str, Any], base: Index | None, version: int, next_chunk_id: int,
                   dense_params: dict[str, Any], counts: _StoreCounts, vocabulary: int) -> dict[str, Any]:
    full = dict(manifest)
    full.update({
        "schema_version": SCHEMA_VERSION,
        "version": version,
        "created_at": base.manifest["created_at"] if base else now_iso(),
        "updated_at": now_iso(),
        "next_chunk_id": int(next_chunk_id),
        "dense": dict(dense_params),
        "counts": {"documents": int(counts.documents), "chunks": int(counts.chunks), "vocabulary": vocabulary},
        "languages": {k: int(v) for k, v in sorted(counts.languages.items())},
    })
    return full


def _write_manifest(tmp: Path, full: dict[str, Any]) -> None:
    full["files"] = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    with open(tmp / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(full, fh, indent=2, ensure_ascii=False)


def _rename_into_place(index_dir: Path, tmp: Path, version: int) -> Path:
    final = index_dir / f"v{version:06d}"
    if final.exists():  # left by a writer that died after its rename but before CURRENT moved
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync_dir(index_dir)
    return final


def _point_current_at(index_dir: Path, final: Path) -> None:
    """The commit point: ``CURRENT`` is replaced atomically, then the directory entry made durable."""
    pointer = index_dir / f".{CURRENT}.tmp"
    with open(pointer, "w") as fh:
        fh.write(final.name)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(pointer, index_dir / CURRENT)
    fsync_dir(index_dir)


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
