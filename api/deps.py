"""FastAPI dependencies: the engine, the settings, the metrics and API-key authentication."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from api.engine import Engine
from api.errors import Unauthorized
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


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
