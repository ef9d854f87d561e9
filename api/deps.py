"""FastAPI dependencies: the engine, the settings, the metrics, the write jobs, the generation
slots, API-key authentication and per-key rate limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from api.engine import Engine
from api.errors import Forbidden, Unauthorized
from api.jobs import JobQueue
from api.limits import GenerationSlots
from api.metrics import Metrics
from api.registry import Registry, missing
from rag.collections import DEFAULT
from rag.config import Settings
from rag.keys import OPEN, READ, WRITE, Principal


def get_registry(request: Request) -> Registry:
    return request.app.state.registry


def authenticate(request: Request) -> Principal:
    """The request's principal. With any key configured (RAG_API_KEYS or the key file), every
    protected endpoint needs ``Authorization: Bearer KEY``; without, the service is open."""
    principal = getattr(request.state, "principal", None)
    if principal is not None:
        return principal
    keys = request.app.state.registry.keys
    if not keys.enabled:
        principal = OPEN
    else:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        principal = keys.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            raise Unauthorized()
    request.state.principal = principal
    return principal


require_api_key = authenticate


def require_admin(request: Request) -> Principal:
    principal = authenticate(request)
    if not principal.admin:
        raise Forbidden("this needs an admin key")
    return principal


def collection_name(request: Request) -> str:
    """The collection a request addresses: ``/collections/{collection}/...``, else the default one."""
    return request.path_params.get("collection", DEFAULT)


def _engine(request: Request, level: str) -> Engine:
    name = collection_name(request)
    if not authenticate(request).can(level, name):
        raise missing(name)  # the same answer as for a collection that does not exist
    return request.app.state.registry.engine(name)


def get_engine(request: Request) -> Engine:
    """The addressed collection's engine, for a key that may read it."""
    return _engine(request, READ)


def get_write_engine(request: Request) -> Engine:
    """The addressed collection's engine, for a key that may write it."""
    return _engine(request, WRITE)


def get_settings(engine: Annotated[Engine, Depends(get_engine)]) -> Settings:
    """The addressed collection's settings (its engine is resolved once per request: FastAPI caches it)."""
    return engine.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def collection_path(collection: Annotated[str, Path(
        description="A collection's name (`GET /collections`); the same routes without this prefix address "
        "the collection `default`.", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]) -> None:
    """Declares the ``{collection}`` path segment of the collection-scoped routes (read by the others)."""


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
        limiter.check(token if request.app.state.registry.keys.enabled and token else
                      f"addr:{request.client.host if request.client else '?'}")


#: The dependencies of every endpoint that reads or writes the index: a valid key, within its rate.
PROTECTED = [Depends(require_api_key), Depends(limit_rate)]

EngineDep = Annotated[Engine, Depends(get_engine)]
WriteEngineDep = Annotated[Engine, Depends(get_write_engine)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
PrincipalDep = Annotated[Principal, Depends(authenticate)]
AdminDep = Annotated[Principal, Depends(require_admin)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]
SlotsDep = Annotated[GenerationSlots, Depends(get_slots)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
