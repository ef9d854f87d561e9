"""Runs an ingest that announces each commit stage and blocks at one, to be killed with SIGKILL.

Usage: python -m tests.ingest.crash_worker CORPUS INDEX STAGE   (STAGE "embedding" blocks inside
the embedding loop; other names are write_version stages).
"""

import sys
import time

from ingest.pipeline import ingest
from rag.config import Settings
from rag.models.embedder import make_embedder


def main() -> None:
    corpus, index, stage = sys.argv[1:4]
    embedder = make_embedder("minilm", threads=1)
    if stage == "embedding":
        inner = embedder.embed_documents

        def slow(texts, batch_size=32):
            print("STAGE embedding", flush=True)
            time.sleep(0.5)
            return inner(texts, batch_size)

        embedder.embed_documents = slow

    def hook(name: str) -> None:
        print(f"STAGE {name}", flush=True)
        if name == stage:
            time.sleep(600)

    ingest([corpus], index, Settings(_env_file=None, embed_batch_size=1), embedder=embedder,
           progress=False, crash_hook=hook)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
