"""The ``rag`` command: the composition root. It imports the library, ``ingest``, ``api`` and
``eval``; nothing imports it. Each module registers its commands on :data:`rag.cli.app.app`."""

from rag.cli import admin, documents, evaluate, perplexity, query, serve, settings, train  # noqa: F401  (they register commands)
from rag.cli.app import app


def main() -> None:  # pragma: no cover - console entry point
    app()


__all__ = ["app", "main"]
