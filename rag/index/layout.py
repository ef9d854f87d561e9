"""Where an index's files live and how a directory is made durable (shared by readers and the writer)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_VERSION = 1
CURRENT = "CURRENT"
LOCK = ".lock"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    for child in path.iterdir():
        with open(child, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(path)


def current_version_dir(index_dir: Path) -> Path | None:
    """The committed version's directory, or None when nothing was ever committed."""
    try:
        name = (Path(index_dir) / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    path = Path(index_dir) / name
    return path if name and path.is_dir() else None


