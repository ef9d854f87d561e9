"""Uploaded files through the same loaders as the CLI (shared by ``POST /documents`` and the web UI)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from ingest.loaders import Skipped, iter_documents
from rag.types import Document


def load_uploads(files: Iterable[tuple[str, bytes]], max_bytes: int) -> tuple[list[Document], list[dict[str, str]]]:
    """``(file name, content)`` pairs as documents whose ids are the file names (any directory part
    of a name is dropped), and the files skipped with their reason."""
    docs, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files:
            (Path(tmp) / (Path(name or "upload.txt").name or "upload.txt")).write_bytes(content)
        for item in iter_documents([Path(tmp)], max_bytes):
            if isinstance(item, Skipped):
                skipped.append({"source": "upload:" + Path(item.source).name, "reason": item.reason})
            else:
                docs.append(replace(item, source="upload:" + Path(item.source).name))
    return docs, skipped
