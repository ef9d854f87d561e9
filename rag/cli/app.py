"""The ``rag`` Typer application and the one place where errors become exit codes.

Exit codes: 0 success · 1 a library error (``RagError``: nothing was changed) · 2 invalid usage
(bad options or arguments, an impossible request) · 3 ``ingest --strict`` and some inputs were
skipped (the index was still updated with everything else).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, Optional, TypeVar

import typer
from rich.console import Console

from rag.config import Settings, get_settings
from rag.errors import InvalidRequestError, RagError

EXIT_ERROR, EXIT_USAGE, EXIT_SKIPPED = 1, 2, 3

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Retrieval-augmented QA: ingest documents, search, ask, evaluate.")
out = Console()
err = Console(stderr=True)

IndexOpt = Annotated[Optional[Path], typer.Option("--index", "-i", help="Index directory (default: RAG_INDEX_DIR).")]
CollectionOpt = Annotated[Optional[str], typer.Option(
    "--collection", "-c", help="A named collection (`rag collections list`) instead of --index.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]

F = TypeVar("F", bound=Callable)


def exit_code(exc: RagError) -> int:
    """An impossible request is a usage error (2); every other library error is 1."""
    return EXIT_USAGE if isinstance(exc, InvalidRequestError) else EXIT_ERROR


def fail(exc: RagError) -> NoReturn:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)  # one line, never wrapped
    raise typer.Exit(exit_code(exc))


def usage_error(message: str) -> NoReturn:
    err.print(f"error: {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def command(group: typer.Typer = app, name: str | None = None) -> Callable[[F], F]:
    """Register a command on ``group``; a ``RagError`` it raises becomes a message and an exit code."""
    def register(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except RagError as exc:
                fail(exc)
        group.command(name)(run)
        return fn
    return register


@app.callback()
def _check_settings() -> None:
    """Settings are read before any command, so a bad RAG_* value is one clear line (exit 1)."""
    try:
        get_settings()
    except RagError as exc:
        fail(exc)


def settings_and_index(index: Path | None, collection: str | None = None, create: bool = False
                       ) -> tuple[Settings, Path]:
    """The settings and index directory a command works on: ``--index``, else ``--collection``'s
    (with that collection's own settings; ``create`` makes a missing one), else RAG_INDEX_DIR."""
    settings = get_settings()
    if collection is None:
        return settings, index or settings.index_dir
    if index is not None:
        usage_error("give --index or --collection, not both")
    from rag.collections import Collections
    from rag.errors import NotFoundError

    collections = Collections(settings)
    try:
        found = collections.get(collection)
    except NotFoundError:
        if not create:
            raise
        found = collections.create(collection)
    return found.settings(settings), found.path
