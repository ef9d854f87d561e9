"""Sparse BM25 index with rank-bm25's ``BM25Okapi`` scoring, vectorised.

Scores equal ``rank_bm25.BM25Okapi(corpus_tokens).get_scores(query_tokens)`` (same IDF with the
epsilon floor for negative IDF, same length normalisation, repeated query tokens counted again),
but the query path touches only the postings of the query terms instead of looping over every
document in Python.

Storage is a document-major term-frequency matrix (CSR: ``indptr``, ``indices``, ``data``) plus
the row → chunk-id map and the vocabulary; weights are derived at load time, so an incremental
update only deletes and appends rows.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp


class TermMatrix:
    """Document-major term counts: row i holds the tokens of chunk ``row_ids[i]``."""

    def __init__(self, vocab: list[str], matrix: sp.csr_matrix, row_ids: np.ndarray) -> None:
        self.vocab = vocab
        self.matrix = matrix
        self.row_ids = row_ids

    @classmethod
    def empty(cls) -> "TermMatrix":
        return cls([], sp.csr_matrix((0, 0), dtype=np.int32), np.zeros(0, dtype=np.int64))

    @property
    def n_rows(self) -> int:
        return self.matrix.shape[0]

    def updated(self, remove_ids: Iterable[int], add_ids: Sequence[int],
                add_tokens: Sequence[Sequence[str]]) -> "TermMatrix":
        """A new matrix without the rows of ``remove_ids`` and with the new rows appended.

        The vocabulary is compacted: terms no longer in any row are dropped, so document
        frequencies and IDF only ever see terms present in the corpus (as rank-bm25 does).
        """
        remove = np.fromiter(remove_ids, dtype=np.int64)
        keep = ~np.isin(self.row_ids, remove) if remove.size else np.ones(self.n_rows, dtype=bool)
        old = self.matrix[keep] if self.n_rows else self.matrix
        term_index = {t: i for i, t in enumerate(self.vocab)}
        vocab = list(self.vocab)
        indptr, indices, data = [0], [], []
        for toks in add_tokens:
            for term, count in Counter(toks).items():
                idx = term_index.get(term)
                if idx is None:
                    idx = term_index[term] = len(vocab)
                    vocab.append(term)
                indices.append(idx)
                data.append(count)
            indptr.append(len(indices))
        new = sp.csr_matrix((np.asarray(data, dtype=np.int32), np.asarray(indices, dtype=np.int32),
                             np.asarray(indptr, dtype=np.int64)), shape=(len(add_tokens), len(vocab)))
        old = sp.csr_matrix(old, shape=(old.shape[0], len(vocab)))
        old.resize((old.shape[0], len(vocab)))
        merged = sp.vstack([old, new], format="csr", dtype=np.int32)
        # Compact the vocabulary to the terms still present.
        df = np.bincount(merged.indices, minlength=len(vocab)) if merged.nnz else np.zeros(len(vocab), int)
        present = np.flatnonzero(df > 0)
        if present.size != len(vocab):
            remap = np.full(len(vocab), -1, dtype=np.int32)
            remap[present] = np.arange(present.size, dtype=np.int32)
            merged = sp.csr_matrix((merged.data, remap[merged.indices], merged.indptr),
                                   shape=(merged.shape[0], present.size))
            vocab = [vocab[i] for i in present]
        merged.sort_indices()
        row_ids = np.concatenate([self.row_ids[keep], np.asarray(add_ids, dtype=np.int64)])
        return TermMatrix(vocab, merged, row_ids)

    # -- persistence (plain arrays + JSON, no pickle) ---------------------------------------
    def save(self, directory: Path) -> list[str]:
        m = self.matrix
        np.savez(directory / "bm25.npz", indptr=m.indptr.astype(np.int64), indices=m.indices.astype(np.int32),
                 data=m.data.astype(np.int32), row_ids=self.row_ids.astype(np.int64),
                 shape=np.asarray(m.shape, dtype=np.int64))
        with open(directory / "vocab.json", "w", encoding="utf-8") as fh:
            json.dump(self.vocab, fh, ensure_ascii=False)
        return ["bm25.npz", "vocab.json"]

    @classmethod
    def load(cls, directory: Path) -> "TermMatrix":
        with np.load(directory / "bm25.npz", allow_pickle=False) as z:
            shape = tuple(int(x) for x in z["shape"])
            matrix = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=shape)
            row_ids = z["row_ids"]
        with open(directory / "vocab.json", encoding="utf-8") as fh:
            vocab = json.load(fh)
        if len(vocab) != shape[1] or len(row_ids) != shape[0]:
            raise ValueError("bm25.npz and vocab.json disagree")
        return cls(vocab, matrix, row_ids)


class BM25Index:
    """Query-time BM25 (Okapi) over a :class:`TermMatrix`."""

    def __init__(self, terms: TermMatrix, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> None:
        self.terms = terms
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.term_index = {t: i for i, t in enumerate(terms.vocab)}
        self.row_ids = terms.row_ids
        n_docs = terms.n_rows
        m = terms.matrix
        doc_len = np.asarray(m.sum(axis=1)).ravel().astype(np.float64) if n_docs else np.zeros(0)
        self.avgdl = float(doc_len.mean()) if n_docs else 0.0
        # IDF exactly as rank_bm25.BM25Okapi._calc_idf.
        df = np.bincount(m.indices, minlength=m.shape[1]).astype(np.float64) if m.nnz else np.zeros(m.shape[1])
        idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5) if df.size else np.zeros(0)
        if idf.size:
            eps = epsilon * (idf.sum() / idf.size)
            idf = np.where(idf < 0, eps, idf)
        self.idf = idf
        # Per-posting term weight tf*(k1+1) / (tf + k1*(1-b+b*dl/avgdl)), stored term-major.
        if m.nnz:
            rows = np.repeat(np.arange(n_docs), np.diff(m.indptr))
            tf = m.data.astype(np.float64)
            norm = k1 * (1 - b + b * doc_len[rows] / self.avgdl)
            w = (tf * (k1 + 1) / (tf + norm)).astype(np.float32)
            csc = sp.csr_matrix((w, m.indices, m.indptr), shape=m.shape).tocsc()
            self._indptr, self._indices, self._data = csc.indptr, csc.indices, csc.data
        else:
            self._indptr = np.zeros(m.shape[1] + 1, dtype=np.int64)
            self._indices = np.zeros(0, dtype=np.int32)
            self._data = np.zeros(0, dtype=np.float32)
        self.n_docs = n_docs

    def get_scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """Scores of every row, in row order (the ``BM25Okapi.get_scores`` equivalent)."""
        scores = np.zeros(self.n_docs, dtype=np.float64)
        for term, count in Counter(query_tokens).items():
            t = self.term_index.get(term)
            if t is None:
                continue
            s, e = self._indptr[t], self._indptr[t + 1]
            scores[self._indices[s:e]] += (count * self.idf[t]) * self._data[s:e]
        return scores

    def weight(self, term: str) -> float:
        """The term's IDF in this index (0 for a term it does not hold)."""
        t = self.term_index.get(term)
        return float(self.idf[t]) if t is not None else 0.0

    def ceiling(self, query_tokens: Sequence[str]) -> float:
        """The score a document would reach with unbounded tf of every query term: a per-query
        scale that makes BM25 scores comparable across queries (used by the refusal gate).
        A query term absent from the corpus counts with the IDF of the rarest possible term, so
        matching one common word of a five-word question is not mistaken for relevance."""
        rarest = math.log(self.n_docs + 0.5) - math.log(0.5) if self.n_docs else 1.0
        total = 0.0
        for term, count in Counter(query_tokens).items():
            t = self.term_index.get(term)
            total += count * (self.idf[t] if t is not None else rarest) * (self.k1 + 1)
        return total

    def rows_allowed(self, chunk_ids: np.ndarray) -> np.ndarray:
        """What :meth:`search` takes as ``allowed``: the mask of the rows of ``chunk_ids``."""
        return np.isin(self.row_ids, chunk_ids)

    def search(self, query_tokens: Sequence[str], k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (chunk ids, scores), best first; only rows with a positive score.

        ``allowed`` is an optional boolean mask over rows (metadata filters): the top k are taken
        among allowed rows, so a filtered query still returns k hits when k exist.
        """
        scores = self.get_scores(query_tokens)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        candidates = np.flatnonzero(scores > 0)
        if candidates.size > k:
            part = np.argpartition(-scores[candidates], k - 1)[:k]
            candidates = candidates[part]
        order = candidates[np.lexsort((self.row_ids[candidates], -scores[candidates]))]
        return self.row_ids[order], scores[order]

    def stats(self) -> dict[str, float | int]:
        return {"documents": self.n_docs, "vocabulary": len(self.terms.vocab),
                "postings": int(self._data.size), "avgdl": round(self.avgdl, 3)}


def okapi_reference_scores(corpus_tokens: list[list[str]], query: list[str], k1: float, b: float,
                           epsilon: float) -> np.ndarray:
    """rank-bm25's own scores, for parity tests and the benchmark (slow by design)."""
    from rank_bm25 import BM25Okapi

    return np.asarray(BM25Okapi(corpus_tokens, k1=k1, b=b, epsilon=epsilon).get_scores(query))

