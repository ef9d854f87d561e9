"""Committing the next version of a Milvus index (the write side of :mod:`rag.index.milvus`).

Milvus has no transaction across rows, so a write is ordered so that every step before the commit
is invisible and every step after it is redone by the next writer:

1. rows a crashed writer left behind are removed (``ver`` above the committed version), and
   deletions it left pending are finished;
2. the new chunks are inserted under version V+1 (readers of V search ``ver <= V``);
3. the BM25 statistics of V+1 (and the ids it removes) are written as new meta records;
4. the manifest row is upserted to name V+1: the commit (one row, atomic);
5. the replaced chunks are deleted by id (readers of V+1 already skip them: they are listed in
   the manifest's pending record until this step ends), then the manifest's pending mark is cleared.

The caller holds :class:`rag.index.lock.IndexLock` (one writer per index directory on this host;
writers on several hosts must be serialised by the deployment, see docs/milvus.md).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, IndexCorruptError, IndexWriteError
from rag.index.layout import SCHEMA_VERSION, now_iso
from rag.index.milvus import (
    BATCH,
    BM25Stats,
    MilvusIndex,
    MilvusStore,
    _in_list,
    decode_counts,
    doc_weights,
    encode_counts,
    filter_text,
)
from rag.index.writer import NewDoc
from rag.types import Chunk

log = logging.getLogger("rag.index")

# Chunks keep the BM25 weights of the average length they were written with; when the average has
# moved by more than this since the last full weighting, every chunk is weighted again.
REWEIGHT_DRIFT = 0.02
_ROW_FIELDS = ["id", "ver", "chunk_id", "doc_id", "ord", "title", "source", "heading", "lang", "text", "terms",
               "content_hash", "format", "doc_lang", "ingested_at", "start", "end", "n_tokens", "dl", "n_chunks",
               "n_chars", "metadata", "meta", "dense"]


def _fit(text: str, limit: int = 65_535) -> str:
    data = (text or "").encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def write_milvus_version(index_dir: Path, settings: Any, base: MilvusIndex | None, manifest: dict[str, Any],
                         remove_doc_ids: Sequence[str], new_docs: Sequence[NewDoc], new_chunks: Sequence[Chunk],
                         vectors: np.ndarray, tokens: Sequence[Sequence[str]], dense_params: dict[str, Any],
                         keep_versions: int = 2, crash_hook: Callable[[str], None] | None = None) -> MilvusIndex:
    """Write and commit the next version; returns it opened. ``base`` None: a new (or rebuilt) index."""
    store = MilvusStore.from_settings(index_dir, settings)
    hook = crash_hook or (lambda stage: None)
    try:
        version = _write(store, base, manifest, remove_doc_ids, new_docs, new_chunks, vectors, tokens,
                         dense_params, keep_versions, hook)
    except (IndexCorruptError, IndexWriteError, ConfigError):
        raise
    except Exception as exc:  # MilvusException, connection errors
        kept = f"version {base.version} is still the committed one" if base else "nothing was committed"
        raise IndexWriteError(f"cannot write the next version of {store.where()} ({exc.__class__.__name__}: "
                              f"{str(exc)[:300]}); {kept}") from exc
    opened = MilvusIndex.open(index_dir, settings)
    if opened.version != version:
        raise IndexWriteError(f"{store.where()}: version {opened.version} is committed, not {version} (another "
                              "writer?)")
    return opened


def recover(store: MilvusStore, committed: dict[str, Any]) -> dict[str, Any]:
    """Undo what a crashed writer added after ``committed`` and finish the deletions it committed."""
    version = int(committed["version"])
    store.client.delete(store.chunks, filter=f"ver > {version}")
    if committed.get("pending"):
        ids = json.loads(store.read_blob(committed["pending"]["key"], committed["pending"]["parts"]))
        _delete_ids(store, ids)
    if int(committed.get("min_ver", 0)) > 0:
        store.client.delete(store.chunks, filter=f"ver < {int(committed['min_ver'])}")
    if committed.get("pending"):
        committed = {**committed, "pending": None}
        store.write_manifest(committed)
    return committed


def open_for_write(index_dir: Path | str, settings: Any) -> MilvusIndex | None:
    """The committed version a writer (holding the index lock) builds on, after :func:`recover`
    (None: no index yet)."""
    store = MilvusStore.from_settings(index_dir, settings)
    if not store.exists():
        return None
    index = MilvusIndex.open(index_dir, settings)
    if index.pending or store.client.query(store.chunks, filter=f"ver > {index.version}", output_fields=["id"],
                                           limit=1):
        recover(store, index.manifest)
        index = MilvusIndex.open(index_dir, settings)
    return index


def _delete_ids(store: MilvusStore, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), BATCH):
        store.client.delete(store.chunks, filter=_in_list("id", ids[start:start + BATCH]))


def _write(store: MilvusStore, base: MilvusIndex | None, wanted: dict[str, Any], remove_doc_ids: Sequence[str],
           new_docs: Sequence[NewDoc], new_chunks: Sequence[Chunk], vectors: np.ndarray,
           tokens: Sequence[Sequence[str]], dense_params: dict[str, Any], keep_versions: int,
           hook: Callable[[str], None]) -> int:
    dim = int(wanted["embedder"]["dim"])
    old = store.read_manifest() if store.client.has_collection(store.meta) else None
    hook("start")
    if base is None:  # new index, or a rebuild: the old rows stay visible until the commit
        if old is not None and (int(old["embedder"]["dim"]) != dim or old.get("dense", {}).get("kind")
                                != dense_params.get("kind")):
            store.drop()  # another vector shape needs another collection: not atomic (docs/milvus.md)
            old = None
        store.create(dim, dense_params)
        if old is not None:
            old = recover(store, old)
        version = int(old["version"]) + 1 if old else 1
        stats, counts, langs, meta_keys = BM25Stats.empty(), {"documents": 0, "chunks": 0}, Counter(), Counter()
        first_id, min_ver, created = (int(old["next_chunk_id"]) if old else 0), version, now_iso()
        removed: list[dict[str, Any]] = []
    else:
        committed = recover(store, base.manifest)
        version = base.version + 1
        m = base.manifest
        stats, counts = base.bm25.stats, dict(m["counts"])
        langs, meta_keys = Counter(m.get("languages", {})), Counter(m.get("metadata_keys", {}))
        first_id, min_ver, created = int(m["next_chunk_id"]), int(committed.get("min_ver", 0)), m["created_at"]
        removed = []
        for start in range(0, len(remove_doc_ids), BATCH):
            removed += list(base.rows(_in_list("doc_id", list(remove_doc_ids[start:start + BATCH])),
                                      ["id", "terms", "lang", "ord", "metadata"]))
    removed_counts = [decode_counts(r["terms"]) for r in removed]
    stats, added_counts = stats.updated(removed_counts, tokens)
    for r in removed:
        langs[r["lang"]] -= 1
        if int(r["ord"]) == 0:
            counts["documents"] -= 1
            meta_keys.subtract((r["metadata"] or {}).keys())
    counts["chunks"] += len(new_chunks) - len(removed)
    counts["documents"] += len(new_docs)
    langs.update(c.lang for c in new_chunks)
    for d in new_docs:
        meta_keys.update(d.metadata.keys())

    k1, b = float(wanted["bm25"]["k1"]), float(wanted["bm25"]["b"])
    avgdl = stats.avgdl
    docs = {d.doc_id: d for d in new_docs}
    ingested_at = now_iso()
    rows = []
    for i, (chunk, tcounts) in enumerate(zip(new_chunks, added_counts)):
        d = docs[chunk.doc_id]
        text = chunk.text
        if len(text.encode("utf-8")) > 65_535:
            raise IndexWriteError(f"chunk {chunk.chunk_id} holds over 65,535 bytes, Milvus's VARCHAR limit")
        rows.append({
            "id": first_id + i, "ver": version, "chunk_id": _fit(chunk.chunk_id), "doc_id": _fit(chunk.doc_id),
            "ord": int(chunk.chunk_id.rsplit("#", 1)[-1]), "title": _fit(chunk.title), "source": _fit(chunk.source),
            "heading": _fit(chunk.heading), "lang": chunk.lang, "text": text, "terms": encode_counts(tcounts),
            "content_hash": d.content_hash, "format": _fit(d.format), "doc_lang": d.lang, "ingested_at": ingested_at,
            "start": int(chunk.start), "end": int(chunk.end), "n_tokens": int(chunk.n_tokens),
            "dl": int(sum(tcounts.values())), "n_chunks": int(d.n_chunks), "n_chars": int(d.n_chars),
            "metadata": d.metadata, "meta": {k: filter_text(v) for k, v in d.metadata.items()},
            "dense": np.asarray(vectors[i], dtype=np.float32).tolist(),
            "sparse": doc_weights(tcounts, k1, b, avgdl),
        })
    for start in range(0, len(rows), BATCH):
        store.client.insert(store.chunks, rows[start:start + BATCH])
    hook("insert")

    stats_key = f"bm25/{version:06d}"
    stats_parts = store.write_blob(stats_key, stats.to_json())
    removed_ids = [int(r["id"]) for r in removed]
    pending = None
    if removed_ids:
        pending = {"key": f"pending/{version:06d}", "parts": store.write_blob(f"pending/{version:06d}",
                                                                           json.dumps(removed_ids))}
    hook("stats")
    prev_weighting = (base.manifest.get("backend", {}).get("weights_avgdl") if base else None) or avgdl
    full = dict(wanted)
    full.update({
        "schema_version": SCHEMA_VERSION,
        "version": version,
        "min_ver": min_ver,
        "created_at": created,
        "updated_at": now_iso(),
        "next_chunk_id": first_id + len(new_chunks),
        "dense": dict(dense_params),
        "counts": {"documents": int(counts["documents"]), "chunks": int(counts["chunks"]),
                   "vocabulary": stats.vocabulary},
        "languages": {k: int(v) for k, v in sorted(langs.items()) if v > 0},
        "metadata_keys": {k: int(v) for k, v in sorted(meta_keys.items()) if v > 0},
        "bm25_stats": {"key": stats_key, "parts": stats_parts},
        "pending": pending,
        "backend": {"kind": "milvus", "collection": store.chunks, "uri": store.uri if "://" in store.uri else
                    Path(store.uri).name, "weights_avgdl": prev_weighting},
    })
    store.write_manifest(full)  # the commit
    hook("committed")
    _delete_ids(store, removed_ids)
    if base is None and min_ver > 1:
        store.client.delete(store.chunks, filter=f"ver < {min_ver}")
    if pending:
        full["pending"] = None
        store.write_manifest(full)
    hook("deleted")
    if prev_weighting and avgdl and abs(avgdl / prev_weighting - 1) > REWEIGHT_DRIFT:
        reweight(store, full, stats)
    store.drop_blobs(keep=lambda key: _blob_version(key) > version - keep_versions)
    try:
        store.client.flush(store.chunks)
    except Exception as exc:  # a server flushes on its own schedule; the data is already written
        log.debug("flush of %s: %s", store.chunks, exc)
    return version


def _blob_version(key: str) -> int:
    try:
        return int(key.split("/")[1])
    except (IndexError, ValueError):
        return 0


def reweight(store: MilvusStore, manifest: dict[str, Any], stats: BM25Stats) -> None:
    """Write every chunk's BM25 vector again with the current average length (rows keep their id and
    version; a query running meanwhile sees each row with its old or its new weights)."""
    k1, b = float(manifest["bm25"]["k1"]), float(manifest["bm25"]["b"])
    expr = f"ver <= {int(manifest['version'])}"
    ids = [int(r["id"]) for r in store.iterate(store.chunks, expr, ["id"])]
    for start in range(0, len(ids), BATCH):
        part = ids[start:start + BATCH]
        rows = store.client.query(store.chunks, filter=_in_list("id", part), output_fields=_ROW_FIELDS,
                                  limit=len(part))
        batch = [{k: r[k] for k in _ROW_FIELDS} for r in rows]
        for row in batch:
            row["sparse"] = doc_weights(decode_counts(row["terms"]), k1, b, stats.avgdl)
        store.client.upsert(store.chunks, batch)
    manifest["backend"]["weights_avgdl"] = stats.avgdl
    store.write_manifest(manifest)
