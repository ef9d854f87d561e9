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

Modules: ``layout`` (paths, durability), ``lock`` (the one writer), ``store`` (reading a
version), ``bm25`` and ``dense`` (the two indexes), ``writer`` (committing the next version).
"""

from rag.index.layout import current_version_dir
from rag.index.lock import IndexLock
from rag.index.store import Index, fingerprint_mismatch
from rag.index.writer import NewDoc, collect_garbage, write_version

__all__ = ["Index", "IndexLock", "NewDoc", "collect_garbage", "current_version_dir", "fingerprint_mismatch",
           "write_version"]
