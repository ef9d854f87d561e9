"""Retrieval-augmented question answering: the library.

Packages: ``index`` (the on-disk index), ``retrieval`` (search, fusion, the factory),
``models`` (embedders, rerankers, generators), ``answering`` (gate, prompt, pipeline),
``training`` (fine-tuning the project's models), ``cli`` (the ``rag`` command: the composition
root, which nothing else imports). Modules: ``config`` (settings), ``types`` (shared values),
``protocols`` (one per swappable stage), ``errors``, ``text`` (tokenizer), ``datasets``,
``serialize`` (hits and answers as JSON).

The common entry points are importable from here; they load lazily so that ``import rag``
stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Settings": "rag.config", "get_settings": "rag.config",
    "build_retriever": "rag.retrieval.factory", "open_index": "rag.retrieval.factory",
    "load_reranker": "rag.retrieval.factory",
    "AnswerPipeline": "rag.answering.pipeline", "make_generator": "rag.models.generator",
}

if TYPE_CHECKING:
    from rag.answering.pipeline import AnswerPipeline
    from rag.config import Settings, get_settings
    from rag.models.generator import make_generator
    from rag.retrieval.factory import build_retriever, load_reranker, open_index


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")


__all__ = ["AnswerPipeline", "Settings", "build_retriever", "get_settings", "load_reranker", "make_generator",
           "open_index"]
