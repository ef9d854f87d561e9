"""FAISS dense index over L2-normalised vectors, searched by inner product (= cosine).

Vectors are keyed by the chunk's integer id (``IndexIDMap2``), so chunks can be deleted by id.
``flat`` is exact search (the default); ``hnsw`` is approximate, for large corpora.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import faiss
import numpy as np


class DenseIndex:
    """A FAISS index plus the parameters it was built with."""

    def __init__(self, index: faiss.Index, kind: str = "flat", ef_search: int = 128) -> None:
        self.index = index
        self.kind = kind
        self.ef_search = ef_search

    @classmethod
    def create(cls, dim: int, kind: str = "flat", hnsw_m: int = 32, ef_construction: int = 200,
               ef_search: int = 128) -> "DenseIndex":
        if kind == "flat":
            inner = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = ef_construction
            inner.hnsw.efSearch = ef_search
        else:
            raise ValueError(f"unknown dense index kind {kind!r}")
        return cls(faiss.IndexIDMap2(inner), kind, ef_search)

    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def updated(self, remove_ids: Iterable[int], add_ids: np.ndarray, vectors: np.ndarray,
                hnsw_m: int = 32, ef_construction: int = 200) -> "DenseIndex":
        """A new index (this one is left untouched) with ids removed and vectors added."""
        remove = np.fromiter(remove_ids, dtype=np.int64)
        if self.kind == "flat":
            new = faiss.clone_index(self.index)
            if remove.size:
                new.remove_ids(faiss.IDSelectorBatch(remove))
            out = DenseIndex(new, "flat", self.ef_search)
        else:
            # HNSW cannot delete: rebuild from the stored vectors that survive.
            old_ids = self.ids()
            keep = ~np.isin(old_ids, remove)
            out = DenseIndex.create(self.dim, "hnsw", hnsw_m, ef_construction, self.ef_search)
            if keep.any():
                vecs = self.index.index.reconstruct_n(0, self.ntotal)
                out.index.add_with_ids(np.ascontiguousarray(vecs[keep]), old_ids[keep])
        if len(add_ids):
            out.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                   np.asarray(add_ids, dtype=np.int64))
        return out

    def search(self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (chunk ids, cosine scores), best first; ``allowed_ids`` restricts the search."""
        if self.ntotal == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        params = None
        if allowed_ids is not None:
            if allowed_ids.size == 0:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            sel = faiss.IDSelectorBatch(np.asarray(allowed_ids, dtype=np.int64))
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(self.ef_search, k)) \
                if self.kind == "hnsw" else faiss.SearchParameters(sel=sel)
        elif self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        scores, ids = self.index.search(q, min(k, self.ntotal), params=params)
        valid = ids[0] >= 0
        return ids[0][valid].astype(np.int64), scores[0][valid]

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, kind: str, ef_search: int = 128) -> "DenseIndex":
        return cls(faiss.read_index(str(path)), kind, ef_search)
