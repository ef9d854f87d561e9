"""Library errors as HTTP responses: the one status map and the exception handlers.

Every error body has the same shape, ``{"error": ..., "detail": ...}`` (``schemas.ErrorOut``).
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rag.errors import (
    Cancelled,
    ConfigError,
    EmbedderMismatchError,
    EmptyCollectionError,
    GeneratorError,
    GeneratorTimeout,
    GeneratorUnavailableError,
    IncompatibleIndexError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    IndexWriteError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    RagError,
    RateLimitedError,
)

log = logging.getLogger("rag.api")


class Unauthorized(RagError):
    """A request without a valid API key."""

    def __str__(self) -> str:
        return "missing or invalid API key (Authorization: Bearer KEY)"


class Forbidden(RagError):
    """A valid key that may not do this (only for what every key knows exists: admin operations)."""


# Most specific first: the first class an error is an instance of decides its status.
STATUS: tuple[tuple[type[RagError], int], ...] = (
    (Unauthorized, 401),
    (Forbidden, 403),
    (RateLimitedError, 429),
    (OverloadedError, 503),
    (Cancelled, 409),
    (NotFoundError, 404),
    (InvalidRequestError, 422),
    (IndexLockedError, 409),
    (EmptyCollectionError, 409),
    (EmbedderMismatchError, 409),
    (IncompatibleIndexError, 409),
    (IndexNotFoundError, 503),
    (IndexWriteError, 507),
    (GeneratorUnavailableError, 503),
    (GeneratorTimeout, 504),
    (GeneratorError, 502),
    (IndexCorruptError, 500),
    (ConfigError, 500),
    (RagError, 500),
)


def status_of(exc: RagError) -> int:
    return next(code for cls, code in STATUS if isinstance(exc, cls))


def error_response(status: int, error: str, detail: object = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "detail": detail})


def error_body(exc: RagError) -> dict:
    """The JSON body of a library error (also sent as a stream's ``error`` event)."""
    return {"error": exc.__class__.__name__, "detail": str(exc)}


def install(app: FastAPI) -> None:
    """Register the handlers: library errors by :data:`STATUS`, request validation as 422."""

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.warning("%s: %s", exc.__class__.__name__, exc)
        retry = getattr(exc, "retry_after", None)
        return JSONResponse(status_code=status, content=error_body(exc),
                            headers={"Retry-After": str(int(retry))} if retry else None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail), "detail": None},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"field": ".".join(str(p) for p in e["loc"][1:]) or "body", "message": e["msg"]}
                  for e in exc.errors()]
        return error_response(422, "invalid request", detail)
