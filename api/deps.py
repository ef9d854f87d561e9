"""FastAPI dependencies: the engine, the settings, the metrics, the write jobs, the generation
slots, API-key authentication and per-key rate limits."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from api.engine import Engine
from api.errors import Unauthorized
from api.jobs import JobQueue
from api.limits import GenerationSlots
from api.metrics import Metrics
from rag.config import Settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.engine.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def require_api_key(request: Request) -> None:
    """With RAG_API_KEYS set, every protected endpoint needs ``Authorization: Bearer KEY``
    (compared in constant time)."""
    keys = request.app.state.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not (scheme.lower() == "bearer" and any(hmac.compare_digest(token.encode(), k.encode()) for k in keys)):
        raise Unauthorized()


def get_jobs(request: Request) -> JobQueue:
    return request.app.state.jobs


def get_slots(request: Request) -> GenerationSlots:
    return request.app.state.slots


def limit_rate(request: Request) -> None:
    """With RAG_RATE_LIMIT_PER_MINUTE set, each key (each client address when there are no keys)
    gets that many requests a minute; past it, 429 with Retry-After."""
    limiter = request.app.state.rate_limiter
    if limiter.enabled:
        token = request.headers.get("authorization", "").partition(" ")[2]
        limiter.check(token if request.app.state.api_keys and token else
                      f"addr:{request.client.host if request.client else '?'}")


#: The dependencies of every endpoint that reads or writes the index: a valid key, within its rate.
PROTECTED = [Depends(require_api_key), Depends(limit_rate)]

EngineDep = Annotated[Engine, Depends(get_engine)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]
SlotsDep = Annotated[GenerationSlots, Depends(get_slots)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
