"""The Milvus index backend (``RAG_BACKEND=milvus``): chunks, vectors, BM25 and manifest in Milvus.

One index directory maps to two collections (:func:`collection_names`): ``rag_<dir>`` holds one
row per chunk (text, document fields, dense vector, BM25 sparse vector, the chunk's term counts)
and ``rag_<dir>_meta`` holds the manifest and the BM25 statistics, so that a replica on another
machine opens the index from the server alone. ``RAG_MILVUS_URI`` is either a local ``.db`` file
(Milvus Lite, embedded) or a server address; the client code is the same.

BM25 is the project's own (:mod:`rag.index.bm25`'s rank-bm25 Okapi formula over
:class:`rag.text.Tokenizer` terms): each chunk's sparse vector holds its saturated, length-normalised
term weights ``tf (k1+1) / (tf + k1 (1 - b + b dl/avgdl))``, a query's vector the IDF of its terms
(computed here from the document frequencies kept in the meta collection), and Milvus ranks by
their inner product. Both sides run the same tokenizer, so English stems and Korean morphemes score
as on the file backend, on Milvus Lite and on a server alike (docs/milvus.md says why not Milvus's
own BM25 function).

Versions: every chunk row carries the version that added it, and readers of version V search
``ver <= V``. A write inserts its rows under V+1 (invisible), writes the V+1 statistics, then
upserts the manifest (the commit, one row), then deletes the rows it replaced; deletions a crash
left pending are listed in the meta collection, hidden from readers and finished by the next writer.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import (
    ConfigError,
    IndexCorruptError,
    IndexNotFoundError,
    IndexWriteError,
    InvalidRequestError,
)
from rag.index.layout import SCHEMA_VERSION, now_iso
from rag.index.store import ManifestFacts
from rag.text import Tokenizer
from rag.types import Chunk, Filters

MANIFEST_KEY = "manifest"
BLOB_PART = 60_000  # characters per meta row (VARCHAR holds at most 65,535 bytes; blobs are ASCII JSON)
BATCH = 500  # rows per insert / ids per delete
EMPTY_DIM = 2**32 - 2  # the dimension an empty BM25 vector carries (Milvus stores no all-zero vector)
MAX_VARCHAR = 65_535
_NAME_OK = re.compile(r"[^A-Za-z0-9_]")


# -- names and connections -------------------------------------------------------------------------
def collection_names(index_dir: Path | str) -> tuple[str, str]:
    """(chunks collection, meta collection) of an index directory: ``rag_<last path component>``,
    sanitised to Milvus's rules (letters, digits, underscores; a short hash when characters were
    replaced, so that two names never meet)."""
    base = Path(index_dir).resolve().name or "index"
    clean = _NAME_OK.sub("_", base)
    if clean != base:
        clean += "_" + hashlib.sha1(base.encode()).hexdigest()[:8]
    name = ("rag_" + clean)[:200]
    return name, name + "_meta"


def resolve_uri(index_dir: Path | str, uri: str) -> str:
    """A server address as given; a local path (Milvus Lite) resolved inside the index directory."""
    if "://" in uri:
        return uri
    if not uri.endswith(".db"):
        raise ConfigError(f"RAG_MILVUS_URI={uri!r}: a Milvus Lite file must end in '.db' (or give a server "
                          "address such as http://host:19530)")
    path = Path(uri)
    return str(path if path.is_absolute() else Path(index_dir) / path)


_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


def client_for(index_dir: Path | str, uri: str, token: str = "") -> Any:
    """One MilvusClient per (uri, token) in the process (Milvus Lite allows one process per file)."""
    from pymilvus import MilvusClient

    resolved = resolve_uri(index_dir, uri)
    key = (resolved, token)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            if "://" not in resolved:
                Path(resolved).parent.mkdir(parents=True, exist_ok=True)
            try:
                client = MilvusClient(uri=resolved, token=token) if token else MilvusClient(uri=resolved)
            except Exception as exc:  # unreachable server, a Lite file another process holds
                raise IndexNotFoundError(f"cannot connect to Milvus at {resolved} ({exc.__class__.__name__}: "
                                         f"{str(exc)[:200]})") from exc
            _clients[key] = client
        return client


def quote(value: str) -> str:
    """A Milvus filter string literal holding ``value`` as data (quotes, backslashes and line breaks
    escaped: a value such as ``x" or id >= 0 or "`` stays one string)."""
    out = (str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
           .replace("\t", "\\t"))
    return f'"{out}"'


def _in_list(field: str, values: Iterable[Any]) -> str:
    items = [str(int(v)) if isinstance(v, (int, np.integer)) else quote(v) for v in values]
    return f"{field} in [{', '.join(items)}]"


def glob_regex(pattern: str) -> re.Pattern[str]:
    """SQLite ``GLOB`` (what the file backend's source filter uses) as a regex: ``*``, ``?``,
    ``[abc]``, ``[^abc]``, case-sensitive."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[" and "]" in pattern[i + 2:] + pattern[i + 1:i + 2]:
            end = pattern.index("]", i + 2) if pattern[i + 1:i + 2] in ("]", "^") else pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            neg = body.startswith("^")
            body = body[1:] if neg else body
            out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z", re.S)


def filter_text(value: Any) -> str | None:
    """A metadata value as SQLite's ``CAST(json_extract(...) AS TEXT)`` shows it (the file backend's
    comparison), so that a filter matches the same documents on both backends."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


# -- BM25 statistics -------------------------------------------------------------------------------
class BM25Stats:
    """Document frequencies per term (term ids are stable: a term keeps its id while it has a document
    frequency of 0), the number of chunks and their total length."""

    def __init__(self, terms: list[str], df: np.ndarray, n_docs: int, total_len: int) -> None:
        self.terms = terms
        self.term_index = {t: i for i, t in enumerate(terms)}
        self.df = df.astype(np.int64)
        self.n_docs = int(n_docs)
        self.total_len = int(total_len)

    @classmethod
    def empty(cls) -> "BM25Stats":
        return cls([], np.zeros(0, dtype=np.int64), 0, 0)

    @property
    def avgdl(self) -> float:
        return self.total_len / self.n_docs if self.n_docs else 0.0

    @property
    def vocabulary(self) -> int:
        return int((self.df > 0).sum())

    def idf(self, epsilon: float) -> np.ndarray:
        """Per term id, exactly as ``rank_bm25.BM25Okapi._calc_idf`` over the terms present."""
        present = self.df > 0
        df = self.df.astype(np.float64)
        idf = np.log(self.n_docs - df + 0.5) - np.log(df + 0.5)
        if present.any():
            eps = epsilon * float(idf[present].mean())
            idf = np.where(idf < 0, eps, idf)
        return np.where(present, idf, 0.0)

    def updated(self, removed: Sequence[dict[int, int]], added: Sequence[Sequence[str]]
                ) -> tuple["BM25Stats", list[dict[int, int]]]:
        """(new statistics, the term-id counts of each added chunk)."""
        terms, index, df = list(self.terms), dict(self.term_index), self.df.tolist()
        n, total = self.n_docs, self.total_len
        for counts in removed:
            for t in counts:
                df[t] -= 1
            n -= 1
            total -= sum(counts.values())
        added_counts = []
        for toks in added:
            counts = {}
            for term, c in Counter(toks).items():
                t = index.get(term)
                if t is None:
                    t = index[term] = len(terms)
                    terms.append(term)
                    df.append(0)
                df[t] += 1
                counts[t] = c
            added_counts.append(counts)
            n += 1
            total += len(toks)
        return BM25Stats(terms, np.asarray(df, dtype=np.int64), n, total), added_counts

    def to_json(self) -> str:
        return json.dumps({"terms": self.terms, "df": self.df.tolist(), "n_docs": self.n_docs,
                           "total_len": self.total_len}, ensure_ascii=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "BM25Stats":
        d = json.loads(text)
        return cls(d["terms"], np.asarray(d["df"], dtype=np.int64), d["n_docs"], d["total_len"])


def doc_weights(counts: dict[int, int], k1: float, b: float, avgdl: float) -> dict[int, float]:
    """A chunk's BM25 sparse vector: rank-bm25's per-term document factor."""
    dl = sum(counts.values())
    if not counts:
        return {EMPTY_DIM: 1e-6}
    norm = k1 * (1 - b + b * dl / avgdl) if avgdl > 0 else k1
    return {int(t): float(tf * (k1 + 1) / (tf + norm)) for t, tf in counts.items()}


def encode_counts(counts: dict[int, int]) -> str:
    return " ".join(f"{t}:{c}" for t, c in sorted(counts.items()))


def decode_counts(text: str) -> dict[int, int]:
    return {int(t): int(c) for t, c in (p.split(":") for p in text.split())} if text else {}


# -- the store: collections, meta records ----------------------------------------------------------
_loaded: set[tuple[str, str]] = set()  # (uri, collection) loaded by this process


class MilvusStore:
    """The two collections of one index directory on one Milvus."""

    def __init__(self, index_dir: Path | str, uri: str, token: str = "") -> None:
        self.index_dir = Path(index_dir)
        self.uri = resolve_uri(index_dir, uri)
        self.client = client_for(index_dir, uri, token)
        self.chunks, self.meta = collection_names(index_dir)

    @classmethod
    def from_settings(cls, index_dir: Path | str, settings: Any) -> "MilvusStore":
        return cls(index_dir, settings.milvus_uri, settings.milvus_token)

    def where(self) -> str:
        return f"Milvus collection {self.chunks} at {self.uri}"

    def exists(self) -> bool:
        return self.client.has_collection(self.meta) and self.read_manifest() is not None

    def ensure_loaded(self, name: str) -> None:
        """Load a collection into the server's memory once per process: one written by another
        process (a CLI ingest, a service before a restart) is 'released' and cannot be queried."""
        key = (self.uri, name)
        if key not in _loaded:
            self.client.load_collection(name)
            _loaded.add(key)

    # -- meta records (manifest, blobs) --
    def read_manifest(self) -> dict[str, Any] | None:
        self.ensure_loaded(self.meta)
        rows = self.client.query(self.meta, filter=f"key == {quote(MANIFEST_KEY)}", output_fields=["value"],
                                 consistency_level="Strong")
        return json.loads(rows[0]["value"]) if rows else None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, ensure_ascii=True, separators=(",", ":"))
        if len(text) > MAX_VARCHAR:
            raise IndexWriteError(f"manifest of {self.where()} is {len(text)} characters (limit {MAX_VARCHAR})")
        self.client.upsert(self.meta, [{"key": MANIFEST_KEY, "value": text, "v": [0.0, 0.0]}])

    def write_blob(self, name: str, text: str) -> int:
        parts = [text[i:i + BLOB_PART] for i in range(0, len(text), BLOB_PART)] or [""]
        rows = [{"key": f"{name}/{i:06d}", "value": p, "v": [0.0, 0.0]} for i, p in enumerate(parts)]
        for start in range(0, len(rows), 50):
            self.client.upsert(self.meta, rows[start:start + 50])
        return len(parts)

    def read_blob(self, name: str, parts: int) -> str:
        self.ensure_loaded(self.meta)
        keys = [f"{name}/{i:06d}" for i in range(parts)]
        got: dict[str, str] = {}
        for start in range(0, len(keys), 200):
            rows = self.client.query(self.meta, filter=_in_list("key", keys[start:start + 200]),
                                     output_fields=["key", "value"], consistency_level="Strong")
            got.update({r["key"]: r["value"] for r in rows})
        missing = [k for k in keys if k not in got]
        if missing:
            raise IndexCorruptError(f"{self.where()}: meta record {missing[0]} is missing; re-ingest with --rebuild")
        return "".join(got[k] for k in keys)

    def drop_blobs(self, keep: Callable[[str], bool]) -> None:
        rows = list(self.iterate(self.meta, 'key != ""', ["key"]))
        gone = [r["key"] for r in rows if r["key"] != MANIFEST_KEY and not keep(r["key"])]
        for start in range(0, len(gone), BATCH):
            self.client.delete(self.meta, filter=_in_list("key", gone[start:start + BATCH]))

    # -- collections --
    def drop(self) -> None:
        for name in (self.chunks, self.meta):
            if self.client.has_collection(name):
                self.client.drop_collection(name)
            _loaded.discard((self.uri, name))

    def create(self, dim: int, dense: dict[str, Any]) -> None:
        from pymilvus import DataType, MilvusClient

        if not self.client.has_collection(self.meta):
            s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            s.add_field("key", DataType.VARCHAR, is_primary=True, max_length=512)
            s.add_field("value", DataType.VARCHAR, max_length=MAX_VARCHAR)
            s.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in every collection
            ip = self.client.prepare_index_params()
            ip.add_index(field_name="v", index_type="FLAT", metric_type="L2")
            self.client.create_collection(self.meta, schema=s, index_params=ip, consistency_level="Strong")
        if self.client.has_collection(self.chunks):
            return
        s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("ver", DataType.INT64)
        s.add_field("chunk_id", DataType.VARCHAR, max_length=MAX_VARCHAR)
        s.add_field("doc_id", DataType.VARCHAR, max_length=MAX_VARCHAR)
        s.add_field("ord", DataType.INT64)
        for name in ("title", "source", "heading", "lang", "text", "terms", "content_hash", "format", "doc_lang",
                     "ingested_at"):
            s.add_field(name, DataType.VARCHAR, max_length=MAX_VARCHAR)
        for name in ("start", "end", "n_tokens", "dl", "n_chunks", "n_chars"):
            s.add_field(name, DataType.INT64)
        s.add_field("metadata", DataType.JSON)  # the document's metadata as given
        s.add_field("meta", DataType.JSON)  # the same, values as filter text (filter_text)
        s.add_field("dense", DataType.FLOAT_VECTOR, dim=int(dim))
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        ip = self.client.prepare_index_params()
        if dense.get("kind") == "hnsw":
            ip.add_index(field_name="dense", index_type="HNSW", metric_type="IP",
                         params={"M": int(dense.get("hnsw_m", 32)),
                                 "efConstruction": int(dense.get("ef_construction", 200))})
        else:
            ip.add_index(field_name="dense", index_type="FLAT", metric_type="IP")
        ip.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        ip.add_index(field_name="doc_id", index_type="INVERTED")
        self.client.create_collection(self.chunks, schema=s, index_params=ip, consistency_level="Strong")

    def iterate(self, collection: str, expr: str, fields: list[str], batch: int = 4000) -> Iterator[dict]:
        """Every row matching ``expr`` (no 16,384-row cap)."""
        if "://" not in self.uri:  # Milvus Lite has no cap (and no timestamp service for an iterator)
            yield from self.client.query(collection, filter=expr, output_fields=fields)
            return
        it = self.client.query_iterator(collection, batch_size=batch, filter=expr, output_fields=fields)
        try:
            while rows := it.next():
                yield from rows
        finally:
            it.close()


# -- the read side ---------------------------------------------------------------------------------
class AllowedIds(np.ndarray):
    """Chunk ids that pass a filter, plus the Milvus expression that selects them (searches use
    the expression, not a list of ids)."""

    expr: str = ""


def _allowed(ids: Sequence[int], expr: str) -> AllowedIds:
    out = np.asarray(sorted(ids), dtype=np.int64).view(AllowedIds)
    out.expr = expr
    return out


def _allowed_expr(allowed: np.ndarray | None) -> str | None:
    if allowed is None:
        return None
    expr = getattr(allowed, "expr", "")
    return expr or _in_list("id", np.asarray(allowed).tolist())


class MilvusBM25:
    """BM25 over the chunks' sparse vectors (the file backend's ``BM25Index`` interface)."""

    def __init__(self, index: "MilvusIndex", stats: BM25Stats, k1: float, b: float, epsilon: float) -> None:
        self._index = index
        self.stats = stats
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.term_index = stats.term_index
        self.idf = stats.idf(epsilon)
        self.n_docs = stats.n_docs
        self.avgdl = stats.avgdl

    def rows_allowed(self, chunk_ids: np.ndarray) -> np.ndarray:
        """What :meth:`search` takes as ``allowed``: here the chunk ids themselves."""
        return chunk_ids

    def query_vector(self, query_tokens: Sequence[str]) -> dict[int, float]:
        vec = {}
        for term, count in Counter(query_tokens).items():
            t = self.term_index.get(term)
            if t is not None and self.stats.df[t] > 0 and self.idf[t] > 0:
                vec[int(t)] = float(count * self.idf[t])
        return vec

    def search(self, query_tokens: Sequence[str], k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (chunk ids, BM25 scores), best first; only positive scores."""
        vec = self.query_vector(query_tokens)
        if not vec or k <= 0 or (allowed is not None and len(allowed) == 0):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        return self._index.search("sparse", vec, k, _allowed_expr(allowed))

    def weight(self, term: str) -> float:
        t = self.term_index.get(term)
        return float(self.idf[t]) if t is not None and self.stats.df[t] > 0 else 0.0

    def ceiling(self, query_tokens: Sequence[str]) -> float:
        """As ``BM25Index.ceiling``: the score of unbounded tf of every query term (the gate's scale)."""
        rarest = math.log(self.n_docs + 0.5) - math.log(0.5) if self.n_docs else 1.0
        total = 0.0
        for term, count in Counter(query_tokens).items():
            t = self.term_index.get(term)
            present = t is not None and self.stats.df[t] > 0
            total += count * (self.idf[t] if present else rarest) * (self.k1 + 1)
        return total

    def stats_dict(self) -> dict[str, float | int]:
        return {"documents": self.n_docs, "vocabulary": self.stats.vocabulary, "avgdl": round(self.avgdl, 3)}


class MilvusDense:
    """Dense search in the chunks collection (the file backend's ``DenseIndex`` interface)."""

    def __init__(self, index: "MilvusIndex", ntotal: int, kind: str, ef_search: int) -> None:
        self._index = index
        self.ntotal = ntotal
        self.kind = kind
        self.ef_search = ef_search

    def search(self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        if self.ntotal == 0 or k <= 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        vec = np.asarray(query, dtype=np.float32).reshape(-1).tolist()
        return self._index.search("dense", vec, min(k, self.ntotal), _allowed_expr(allowed_ids))

    def ids(self) -> np.ndarray:
        return np.asarray(sorted(r["id"] for r in self._index.rows(None, ["id"])), dtype=np.int64)


class MilvusIndex(ManifestFacts):
    """A committed version of an index in Milvus (the :class:`rag.protocols.IndexBackend` read side).
    Thread-safe for concurrent queries."""

    remote = True  # every search is a call to the Milvus server: the retriever overlaps BM25 and dense

    def __init__(self, store: MilvusStore, manifest: dict[str, Any], stats: BM25Stats,
                 pending: Sequence[int] = ()) -> None:
        self.store = store
        self.manifest = manifest
        self.index_dir = store.index_dir
        self.where = store.index_dir
        # A name per version, as the file backend's version directory (the service compares it to
        # the committed one to see another process's commit); nothing is stored at this path.
        self.path = store.index_dir / f"v{int(manifest['version']):06d}"
        self.pending = list(pending)
        self.visible = f"ver <= {int(manifest['version'])}" + (
            f" and not ({_in_list('id', self.pending)})" if self.pending else "")
        p, d = manifest["bm25"], manifest.get("dense", {})
        self.tokenizer = Tokenizer.from_config(manifest["tokenizer"])
        self.bm25 = MilvusBM25(self, stats, p["k1"], p["b"], p["epsilon"])
        self.dense = MilvusDense(self, int(manifest["counts"]["chunks"]), d.get("kind", "flat"),
                                 int(d.get("ef_search", 128)))
        self._docs: list[dict[str, Any]] | None = None
        self._docs_lock = threading.Lock()

    @classmethod
    def open(cls, index_dir: Path | str, settings: Any) -> "MilvusIndex":
        store = MilvusStore.from_settings(index_dir, settings)
        manifest = store.read_manifest() if store.client.has_collection(store.meta) else None
        if manifest is None or not store.client.has_collection(store.chunks):
            raise IndexNotFoundError(f"no index in {store.where()} (run `rag ingest PATH --index {index_dir}` "
                                     "with RAG_BACKEND=milvus)")
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise IndexCorruptError(f"{store.where()}: index schema {manifest.get('schema_version')} is not "
                                    f"{SCHEMA_VERSION}; re-ingest with --rebuild")
        try:
            stats = BM25Stats.from_json(store.read_blob(manifest["bm25_stats"]["key"],
                                                        manifest["bm25_stats"]["parts"]))
            pending = json.loads(store.read_blob(manifest["pending"]["key"], manifest["pending"]["parts"])) \
                if manifest.get("pending") else []
        except (KeyError, ValueError) as exc:
            raise IndexCorruptError(f"{store.where()}: unreadable BM25 statistics ({exc}); re-ingest with "
                                    "--rebuild") from exc
        store.ensure_loaded(store.chunks)
        return cls(store, manifest, stats, pending)

    def close(self) -> None:
        """Nothing to release: the client stays open for the process (other versions share it)."""

    # -- Milvus access --
    def _expr(self, extra: str | None) -> str:
        return self.visible if not extra else f"({self.visible}) and ({extra})"

    def search(self, field: str, vector: Any, k: int, extra: str | None) -> tuple[np.ndarray, np.ndarray]:
        params: dict[str, Any] = {"metric_type": "IP"}
        if field == "dense" and self.dense.kind == "hnsw":
            params["params"] = {"ef": max(self.dense.ef_search, k)}
        res = self.store.client.search(self.store.chunks, data=[vector], anns_field=field, limit=int(k),
                                       filter=self._expr(extra), search_params=params, output_fields=["id"])
        hits = [(int(h["id"]), float(h["distance"])) for h in res[0] if h["distance"] > 0 or field == "dense"]
        hits.sort(key=lambda x: (-x[1], x[0]))  # ties by chunk id, as the file backend
        return (np.asarray([h[0] for h in hits], dtype=np.int64),
                np.asarray([h[1] for h in hits], dtype=np.float64 if field == "sparse" else np.float32))

    def rows(self, extra: str | None, fields: list[str]) -> Iterator[dict]:
        return self.store.iterate(self.store.chunks, self._expr(extra), fields)

    # -- chunk store --
    def chunks_by_ids(self, ids: Iterable[int]) -> dict[int, Chunk]:
        ids = [int(i) for i in ids]
        out: dict[int, Chunk] = {}
        fields = ["id", "chunk_id", "doc_id", "title", "source", "heading", "start", "end", "n_tokens", "lang",
                  "text"]
        for start in range(0, len(ids), BATCH):
            part = ids[start:start + BATCH]
            for r in self.store.client.query(self.store.chunks, filter=self._expr(_in_list("id", part)),
                                             output_fields=fields, limit=len(part)):
                out[int(r["id"])] = Chunk(chunk_id=r["chunk_id"], doc_id=r["doc_id"], text=r["text"],
                                          title=r["title"], source=r["source"], heading=r["heading"],
                                          start=int(r["start"]), end=int(r["end"]), n_tokens=int(r["n_tokens"]),
                                          lang=r["lang"] or "en")
        return out

    def chunk_ids_of_docs(self, doc_ids: Iterable[str]) -> list[int]:
        doc_ids = list(doc_ids)
        out: list[int] = []
        for start in range(0, len(doc_ids), BATCH):
            out += [int(r["id"]) for r in self.rows(_in_list("doc_id", doc_ids[start:start + BATCH]), ["id"])]
        return out

    def _doc_rows(self) -> list[dict[str, Any]]:
        """One row per document (its first chunk carries the document's fields), sorted by id."""
        with self._docs_lock:
            if self._docs is None:
                fields = ["doc_id", "title", "source", "format", "n_chunks", "n_chars", "doc_lang", "metadata",
                          "ingested_at", "content_hash"]
                self._docs = sorted(self.rows("ord == 0", fields), key=lambda r: r["doc_id"])
            return self._docs

    def doc_hashes(self) -> dict[str, str]:
        return {r["doc_id"]: r["content_hash"] for r in self._doc_rows()}

    def documents(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        keys = ("doc_id", "title", "source", "format", "n_chunks", "n_chars", "lang", "metadata", "ingested_at")
        return [{k: (r["doc_lang"] if k == "lang" else r[k]) for k in keys}
                for r in self._doc_rows()[offset:offset + limit]]

    def metadata_keys(self) -> set[str]:
        return {k for k, n in self.manifest.get("metadata_keys", {}).items() if n > 0}

    def allowed_chunk_ids(self, filters: Filters) -> np.ndarray:
        """Chunk ids of the documents that pass ``filters`` (sorted), carrying the Milvus expression."""
        unknown = [k for k, _ in filters.metadata if k not in self.metadata_keys()]
        if unknown:
            known = ", ".join(sorted(self.metadata_keys())) or "none"
            raise InvalidRequestError(f"unknown metadata filter field(s): {', '.join(unknown)} (known: {known})")
        where = []
        if filters.doc_ids:
            where.append(_in_list("doc_id", filters.doc_ids))
        if filters.source:
            # GLOB has no Milvus operator (LIKE has other wildcards and no classes): the documents whose
            # source matches become a list of ids.
            rx = glob_regex(filters.source)
            where.append(_in_list("doc_id", [r["doc_id"] for r in self._doc_rows() if rx.match(r["source"] or "")]))
        for key, value in filters.metadata:
            where.append(f"meta[{quote(key)}] == {quote(str(value))}")
        expr = " and ".join(f"({w})" for w in where) if where else ""
        if "doc_id in []" in expr:
            return _allowed([], "id < 0")
        return _allowed([int(r["id"]) for r in self.rows(expr or None, ["id"])], expr or "id >= 0")

    def disk_bytes(self) -> dict[str, int]:
        """Bytes of a Milvus Lite file (nothing for a server)."""
        path = Path(self.store.uri)
        if "://" in self.store.uri or not path.exists():
            return {}
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        return {path.name: sum(p.stat().st_size for p in files)}


def open_milvus(index_dir: Path | str, settings: Any) -> MilvusIndex:
    return MilvusIndex.open(index_dir, settings)


def milvus_index_exists(index_dir: Path | str, settings: Any) -> bool:
    return MilvusStore.from_settings(index_dir, settings).exists()


def committed_version(index_dir: Path | str, settings: Any) -> int | None:
    """The version the manifest in Milvus names (one small query), or None when there is none."""
    store = MilvusStore.from_settings(index_dir, settings)
    if not store.client.has_collection(store.meta):
        return None
    m = store.read_manifest()
    return int(m["version"]) if m else None
