"""``rag serve``: the HTTP API under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from rag.cli.app import IndexOpt, command, settings_and_index


@command()
def serve(
    index: IndexOpt = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API (POST /search, /ask, /documents; GET /healthz, /readyz, /metrics)."""
    import logging

    import uvicorn

    from api.app import create_app

    settings, index_dir = settings_and_index(index)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # SIGTERM: uvicorn stops accepting, lets in-flight requests finish for the grace period, then
    # cancels the rest (whose generations stop at their next token) and runs the shutdown.
    uvicorn.run(create_app(settings.model_copy(update={"index_dir": index_dir})), host=host, port=port,
                log_level=log_level, timeout_graceful_shutdown=settings.shutdown_grace_s or None)
