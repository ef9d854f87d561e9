"""Error hierarchy. Every error a user can cause or meet derives from :class:`RagError`.

These are plain exceptions: the CLI maps them to an exit code and a one-line message
(``rag.cli.app``), the HTTP API to a status code and a JSON body (``api.errors``). Nothing in the
library knows about either.
"""

from __future__ import annotations


class RagError(Exception):
    """Base class: a failure the user can understand and act on."""


class ConfigError(RagError):
    """Settings are invalid or name a model/preset that cannot be loaded."""


class IndexNotFoundError(RagError):
    """No index (or no committed version of it) exists at the given directory."""


class EmptyCollectionError(RagError):
    """A named collection that holds no documents yet: nothing to search or answer from."""


class IndexCorruptError(RagError):
    """An index version on disk is unreadable or inconsistent with its manifest."""


class IndexLockedError(RagError):
    """Another writer holds the index lock; the caller should retry later."""


class IndexWriteError(RagError):
    """The index cannot be written (disk full, read-only, permissions); the committed version is untouched."""


class EmbedderMismatchError(RagError):
    """The index was built with another embedder (or dimension) than the one in use."""


class IncompatibleIndexError(RagError):
    """The index was built with other chunking/tokenizer settings; re-ingest with --rebuild."""


class InvalidRequestError(RagError):
    """A request is well-formed but asks for something impossible (unknown filter field...)."""


class NotFoundError(InvalidRequestError):
    """A named thing (a document id) does not exist."""


class GeneratorError(RagError):
    """The LLM backend failed (unreachable, bad response)."""


class GeneratorTimeout(GeneratorError):
    """The LLM backend did not answer in time."""


class GeneratorUnavailableError(RagError):
    """No LLM is loaded (it failed to load at start-up); retrieval still works."""


class Cancelled(RagError):
    """Work was stopped before it finished (the client went away, a timeout, a cancelled job)."""


class OverloadedError(RagError):
    """The service is at a bound (generation slots, the write queue); retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(OverloadedError):
    """A key made more requests than its rate allows; retry after ``retry_after`` s."""
