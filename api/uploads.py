"""Uploaded files through the same loaders as the CLI (shared by ``POST /documents`` and the web UI).

Uploads are copied to a directory in pieces (never read whole into memory) and loaded from there,
by the write job, so that a large upload costs disk, not RAM, and its parsing runs off the event loop.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from ingest.loaders import Skipped, iter_documents
from rag.types import Document

_COPY_CHUNK = 1 << 20


def safe_name(name: str | None, taken: set[str]) -> str:
    """A file name without any directory part (no path traversal), unique within one upload."""
    base = Path((name or "").replace("\\", "/")).name.lstrip(".") or "upload.txt"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        stem, dot, ext = base.rpartition(".")
        candidate = f"{stem}-{n}.{ext}" if dot else f"{base}-{n}"
    taken.add(candidate)
    return candidate


def save_uploads(files: Iterable[tuple[str | None, BinaryIO]], directory: Path) -> None:
    """Copy each ``(file name, readable)`` into ``directory`` in 1 MB pieces."""
    taken: set[str] = set()
    for name, fh in files:
        with open(directory / safe_name(name, taken), "wb") as out:
            shutil.copyfileobj(fh, out, _COPY_CHUNK)


def load_upload_dir(directory: Path, max_bytes: int) -> tuple[list[Document], list[dict[str, str]]]:
    """The documents in ``directory`` (ids: their file names) and the files skipped with their reason."""
    docs, skipped = [], []
    for item in iter_documents([directory], max_bytes):
        if isinstance(item, Skipped):
            skipped.append({"source": "upload:" + Path(item.source).name, "reason": item.reason})
        else:
            docs.append(replace(item, source="upload:" + Path(item.source).name))
    return docs, skipped


def load_uploads(files: Iterable[tuple[str, bytes]], max_bytes: int) -> tuple[list[Document], list[dict[str, str]]]:
    """``(file name, content)`` pairs as documents whose ids are the file names (any directory part
    of a name is dropped), and the files skipped with their reason."""
    import io

    with tempfile.TemporaryDirectory() as tmp:
        save_uploads(((name, io.BytesIO(content)) for name, content in files), Path(tmp))
        return load_upload_dir(Path(tmp), max_bytes)
