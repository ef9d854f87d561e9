"""Error hierarchy. Every error a user can cause or meet derives from :class:`RagError`.

The CLI turns these into an exit code plus a one-line message, the HTTP API into a status
code plus a JSON body; nothing below the edges formats errors for people.
"""

from __future__ import annotations


class RagError(Exception):
    """Base class: a failure the user can understand and act on."""

    exit_code: int = 1
    http_status: int = 500


class ConfigError(RagError):
    """Settings are invalid or name a model/preset that cannot be loaded."""

    http_status = 500


class IndexNotFoundError(RagError):
    """No index (or no committed version of it) exists at the given directory."""

    http_status = 503


class IndexCorruptError(RagError):
    """An index version on disk is unreadable or inconsistent with its manifest."""

    http_status = 500


class IndexLockedError(RagError):
    """Another writer holds the index lock; the caller should retry later."""

    http_status = 409


class EmbedderMismatchError(RagError):
    """The index was built with another embedder (or dimension) than the one in use."""

    http_status = 409


class IncompatibleIndexError(RagError):
    """The index was built with other chunking/tokenizer settings; re-ingest with --rebuild."""

    http_status = 409


class InvalidRequestError(RagError):
    """A request is well-formed JSON but asks for something impossible (unknown filter field...)."""

    exit_code = 2
    http_status = 422
