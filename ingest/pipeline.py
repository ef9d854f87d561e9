"""Incremental, crash-safe ingest: documents → chunks → BM25 + FAISS, committed as a new version.

Unchanged documents (same content hash) are neither re-chunked nor re-embedded; changed ones
have their old chunks replaced; ``prune`` removes documents not seen in this run and
``delete`` removes named ones. Nothing changes on disk unless something changed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ingest.chunker import Chunker
from ingest.loaders import Skipped, content_hash, iter_documents
from rag.config import Settings
from rag.datasets import RetrievalSet
from rag.errors import IncompatibleIndexError, InvalidRequestError
from rag.index import (
    Index,
    IndexLock,
    NewDoc,
    collect_garbage,
    current_version_dir,
    fingerprint_mismatch,
    write_version,
)
from rag.models.embedder import embedder_languages, make_embedder
from rag.protocols import Embedder, IndexBackend
from rag.text import Tokenizer, detect_lang
from rag.types import Chunk, Document


@dataclass
class IngestReport:
    """What an ingest did; printed by the CLI and returned by the API."""

    index_dir: str
    version: int | None = None
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_total: int = 0
    documents_total: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    committed: bool = False

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_added / self.embed_seconds if self.embed_seconds > 0 else 0.0

    def skip_reasons(self) -> Counter[str]:
        return Counter(s.reason.split(":")[0] for s in self.skipped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index_dir": self.index_dir, "version": self.version, "committed": self.committed,
            "documents": {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                          "removed": self.removed, "skipped": len(self.skipped), "total": self.documents_total},
            "chunks": {"added": self.chunks_added, "removed": self.chunks_removed, "total": self.chunks_total},
            "skipped": [{"source": s.source, "reason": s.reason} for s in self.skipped],
            "seconds": round(self.seconds, 3), "embed_seconds": round(self.embed_seconds, 3),
            "chunks_per_second": round(self.chunks_per_second, 2),
        }


def index_settings(settings: Settings, embedder: Embedder, tokenizer: Tokenizer) -> dict[str, Any]:
    """The manifest fields that shape an index; an existing index must match them."""
    return {
        "embedder": {"name": embedder.name, "dim": int(embedder.dim), "max_tokens": int(embedder.max_tokens),
                     "languages": embedder_languages(embedder.name), "normalized": True,
                     "fingerprint": getattr(embedder, "fingerprint", None)},
        "tokenizer": tokenizer.config(),
        "bm25": {"k1": settings.bm25_k1, "b": settings.bm25_b, "epsilon": settings.bm25_epsilon,
                 "scoring": "rank_bm25.BM25Okapi"},
        "chunking": {"max_tokens": settings.chunk_tokens or int(embedder.max_tokens),
                     "overlap": settings.chunk_overlap},
    }


def dense_settings(settings: Settings) -> dict[str, Any]:
    return {"kind": settings.dense_index, "metric": "inner_product", "hnsw_m": settings.hnsw_m,
            "ef_construction": settings.hnsw_ef_construction, "ef_search": settings.hnsw_ef_search}


def _check_compatible(base: Index, wanted: dict[str, Any],
                      keys: Sequence[str] = ("embedder", "tokenizer", "chunking")) -> None:
    for key in keys:
        have, want = base.manifest.get(key, {}), wanted[key]
        diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
        if key == "embedder" and set(diff) == {"fingerprint"}:
            raise IncompatibleIndexError(f"index {base.path.parent} was "
                                         + fingerprint_mismatch(want["name"], have.get("fingerprint"),
                                                                want["fingerprint"]))
        if key == "embedder" and diff:
            raise IncompatibleIndexError(
                f"index {base.path.parent} was built with embedder {have.get('name')!r}; the configured "
                f"embedder is {want['name']!r}. Use the same embedder or re-ingest with --rebuild")
        if diff:
            detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise IncompatibleIndexError(
                f"index {base.path.parent} was built with other {key} settings ({detail}); "
                "re-ingest with --rebuild")


AUTO = "auto"
NON_ENGLISH_SHARE = 0.1


def choose_embedder(docs: Sequence[Document]) -> str:
    """The ``auto`` embedder: multilingual e5 when over 10 % of the documents are not English
    (all-MiniLM-L6-v2 does not know Korean: its vectors would drag hybrid results down),
    otherwise the faster English MiniLM."""
    if not docs:
        return "minilm"
    other = sum(1 for d in docs if detect_lang(d.title + " " + d.text[:2000]) != "en")
    return "e5-small" if other / len(docs) > NON_ENGLISH_SHARE else "minilm"


def embed_chunks(embedder: Embedder, chunks: Sequence[Chunk], batch_size: int, progress: bool,
                 notify: Callable[[str, int, int], None] | None = None) -> np.ndarray:
    """Embed in length-sorted batches (less padding), with a progress bar (and ``notify`` per batch)."""
    texts = [c.embed_text() for c in chunks]
    vectors = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    with tqdm(total=len(texts), desc="embedding", unit="chunk", disable=not progress, smoothing=0.1) as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            vectors[idx] = embedder.embed_documents([texts[i] for i in idx], batch_size=batch_size)
            bar.update(len(idx))
            if notify is not None:
                notify("embed", min(start + batch_size, len(order)), len(order))
    return vectors


@dataclass
class _Plan:
    """What a run changes: new document rows and their chunks, and the ids whose old rows go."""

    new_docs: list[NewDoc] = field(default_factory=list)
    new_chunks: list[Chunk] = field(default_factory=list)
    remove_ids: list[str] = field(default_factory=list)


def ingest(paths: Sequence[Path | str], index_dir: Path | str, settings: Settings, *,
           prune: bool = False, delete: Sequence[str] = (), rebuild: bool = False,
           embedder: Embedder | None = None, progress: bool = True,
           documents: Sequence[Document] | None = None,
           crash_hook: Callable[[str], None] | None = None,
           on_progress: Callable[[str, int, int], None] | None = None,
           lock_wait_s: float = 0.0, loaded: dict[str, Embedder] | None = None) -> IngestReport:
    """Bring the index at ``index_dir`` in line with ``paths`` (and/or ``documents``) and commit.

    ``loaded`` holds embedders already in memory, by name: the one this index needs is reused from
    it rather than loaded again (and a newly loaded one is added to it).

    ``on_progress(stage, done, total)`` hears of each stage (load, chunk, embed, commit) and each
    embedded batch; an exception it raises (a cancelled job) stops the run before anything is
    committed.

    Steps: load the sources, choose and check the embedder, plan (hash, chunk), embed, commit.
    Holds the index's writer lock for the whole run: while another writer holds it, waits up to
    ``lock_wait_s`` seconds (stage ``waiting for the index lock``), then fails with
    :class:`IndexLockedError`; readers keep using the committed version meanwhile.
    """
    t0 = time.perf_counter()
    index_dir = Path(index_dir)
    report = IngestReport(index_dir=str(index_dir))
    tokenizer = Tokenizer(settings.tokenizer_stem, settings.tokenizer_stopwords, settings.tokenizer_korean)
    notify = on_progress or (lambda stage, done, total: None)
    with IndexLock(index_dir, lock_wait_s, lambda holder: notify("waiting for the index lock", 0, 0)):
        base = None if rebuild else _open_base(index_dir, settings)
        sources = _load_sources(paths, documents, settings)
        notify("chunk", 0, len(sources))
        embedder = _ready_embedder(embedder, settings, base, sources, loaded)
        wanted = index_settings(settings, embedder, tokenizer)
        if base is not None:
            _check_compatible(base, wanted)
        known = base.doc_hashes() if base else {}
        missing = [d for d in delete if d not in known]
        if missing:
            raise InvalidRequestError(f"cannot delete unknown document id(s): {', '.join(missing[:5])}")
        chunker = Chunker(embedder.count_tokens, wanted["chunking"]["max_tokens"], embedder.overhead,
                          wanted["chunking"]["overlap"])
        plan = _plan(sources, known, set(delete), prune, chunker, report, progress)
        if base is not None and not plan.new_chunks and not plan.remove_ids:
            # Nothing changed: no new version (a new or rebuilt index is committed even if empty).
            _report_totals(report, base)
            base.close()
            if settings.backend == "files":
                collect_garbage(index_dir, settings.keep_versions)
        else:
            _embed_and_commit(index_dir, base, plan, embedder, tokenizer, wanted, settings, report, progress,
                              crash_hook, notify)
    report.seconds = time.perf_counter() - t0
    return report


def _open_base(index_dir: Path, settings: Settings) -> IndexBackend | None:
    """The committed version to update, on the backend the settings name (None: no index yet)."""
    if settings.backend == "milvus":
        from rag.index.milvus_writer import open_for_write

        return open_for_write(index_dir, settings)
    return Index.open(index_dir) if current_version_dir(index_dir) is not None else None


def _load_sources(paths: Sequence[Path | str], documents: Sequence[Document] | None,
                  settings: Settings) -> list[Document | Skipped]:
    sources = list(iter_documents(paths, int(settings.max_file_mb * 1e6))) if paths else []
    return sources + list(documents or [])


def _ready_embedder(embedder: Embedder | None, settings: Settings, base: Index | None,
                    sources: Sequence[Document | Skipped], loaded: dict[str, Embedder] | None = None) -> Embedder:
    """The embedder to use, loaded: the given one, else the setting's (``auto``: the index's own,
    or the choice for these documents). A mismatch with the index fails before loading the model."""
    if embedder is None:
        name = settings.embedder
        if name == AUTO:
            name = base.embedder_name if base else choose_embedder([d for d in sources if isinstance(d, Document)])
        embedder = (loaded or {}).get(name) or make_embedder(name, settings.embed_threads, settings.e5_engine,
                                                             settings.embed_precision)
        if loaded is not None:
            loaded.setdefault(name, embedder)
    if base is not None and base.embedder_name != embedder.name:
        _check_compatible(base, {"embedder": {"name": embedder.name}}, keys=("embedder",))
    embedder.load()
    return embedder


def _plan(sources: Sequence[Document | Skipped], known: dict[str, str], delete: set[str], prune: bool,
          chunker: Chunker, report: IngestReport, progress: bool) -> _Plan:
    """Hash every source against the index: unchanged ones are skipped, new and changed ones chunked;
    counts go into ``report``."""
    plan = _Plan()
    seen: set[str] = set()
    replaced: list[str] = []
    with tqdm(sources, desc="chunking", unit="doc", disable=not progress or len(sources) < 50) as bar:
        for item in bar:
            if isinstance(item, Skipped):
                report.skipped.append(item)
                continue
            if item.doc_id in seen:
                report.skipped.append(Skipped(item.source, f"duplicate document id {item.doc_id!r}"))
                continue
            seen.add(item.doc_id)
            if item.doc_id in delete:  # deleted in the same run: not re-added
                continue
            digest = content_hash(item)
            old = known.get(item.doc_id)
            if old == digest:
                report.unchanged += 1
                continue
            chunks = chunker.chunk(item)
            if not chunks:
                report.skipped.append(Skipped(item.source, "no text content"))
                continue
            if old is None:
                report.added += 1
            else:
                report.updated += 1
                replaced.append(item.doc_id)
            plan.new_chunks.extend(chunks)
            plan.new_docs.append(NewDoc(item.doc_id, item.title, item.source, item.format, digest, len(chunks),
                                        len(item.text), detect_lang(item.text[:5000]), dict(item.metadata)))
    removed = [d for d in known if d in delete or (prune and d not in seen)]
    # A changed document already counted as updated; a pruned/deleted one as removed.
    report.removed = len([d for d in removed if d not in replaced])
    plan.remove_ids = sorted(set(replaced) | set(removed))
    return plan


def _embed_and_commit(index_dir: Path, base: Index | None, plan: _Plan, embedder: Embedder, tokenizer: Tokenizer,
                      wanted: dict[str, Any], settings: Settings, report: IngestReport, progress: bool,
                      crash_hook: Callable[[str], None] | None,
                      notify: Callable[[str, int, int], None]) -> None:
    t_embed = time.perf_counter()
    vectors = embed_chunks(embedder, plan.new_chunks, settings.embed_batch_size, progress, notify)
    report.embed_seconds = time.perf_counter() - t_embed
    tokens = tokenizer.tokenize_many([c.embed_text() for c in plan.new_chunks])
    report.chunks_removed = len(base.chunk_ids_of_docs(plan.remove_ids)) if base else 0
    notify("commit", 0, 1)  # the last point at which a run can be stopped
    if settings.backend == "milvus":
        from rag.index.milvus_writer import write_milvus_version

        committed = write_milvus_version(index_dir, settings, base, wanted, plan.remove_ids, plan.new_docs,
                                         plan.new_chunks, vectors, tokens, dense_settings(settings),
                                         settings.keep_versions, crash_hook)
    else:
        final = write_version(index_dir, base, wanted, plan.remove_ids, plan.new_docs, plan.new_chunks, vectors,
                              tokens, dense_settings(settings), settings.keep_versions, crash_hook)
        committed = Index.open(index_dir, final)
    report.committed = True
    report.chunks_added = len(plan.new_chunks)
    _report_totals(report, committed)
    committed.close()
    if base is not None:
        base.close()


def _report_totals(report: IngestReport, index: Index) -> None:
    report.version = index.version
    report.chunks_total = index.n_chunks
    report.documents_total = int(index.manifest["counts"]["documents"])


def ingest_dataset(data: RetrievalSet, index_dir: Path | str, settings: Settings, progress: bool = True,
                   embedder: Embedder | None = None) -> IngestReport:
    """Ingest a labelled data set's corpus into ``index_dir`` (incremental: an up-to-date index is reused)."""
    paths = [data.corpus_path] if data.corpus_path else []
    return ingest(paths, index_dir, settings, documents=data.documents, progress=progress, embedder=embedder)
