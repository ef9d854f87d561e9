"""The single-writer lock of an index directory."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from rag.errors import IndexLockedError, IndexWriteError
from rag.index.layout import LOCK, now_iso


class IndexLock:
    """Exclusive writer lock (``flock``): released by the kernel even if the writer is killed.

    Held by another writer, it is retried for up to ``wait_s`` seconds (``on_wait(holder)`` hears
    of each retry), then :class:`IndexLockedError` names the holder."""

    def __init__(self, index_dir: Path, wait_s: float = 0.0, on_wait: Callable[[str], None] | None = None) -> None:
        self.path = Path(index_dir) / LOCK
        self.wait_s = wait_s
        self.on_wait = on_wait
        self._fh = None

    def __enter__(self) -> "IndexLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+")
        except OSError as exc:  # read-only or not ours: nothing can be written, say so before any work
            raise IndexWriteError(f"cannot write to index directory {self.path.parent} "
                                  f"({exc.__class__.__name__}: {exc.strerror or exc})") from exc
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                if time.monotonic() >= deadline:
                    fh.close()
                    raise IndexLockedError(
                        f"index {self.path.parent} is being written by {holder}; wait for it to finish "
                        "(readers are not affected)") from None
                if self.on_wait is not None:
                    try:
                        self.on_wait(holder)  # may raise: a cancelled job stops waiting
                    except BaseException:
                        fh.close()
                        raise
                time.sleep(0.25)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {now_iso()}")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


