"""Operations: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsDep, PrincipalDep, require_admin
from api.engine import ready_info
from api.schemas import ErrorOut, Health, Ready
from rag.collections import DEFAULT

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is alive (no auth, no index needed)."""
    return Health()


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
def readyz(request: Request, principal: PrincipalDep):
    """Models and the default collection's index loaded? With counts (for a key that may read that
    collection), models and whether a reranker is active; 503 until start-up has loaded everything,
    or when no index exists yet."""
    info = ready_info(request.app.state.registry.default)
    if not principal.can("read", DEFAULT):
        info = {k: v for k, v in info.items() if k not in ("index_dir", "index_version", "documents", "chunks")}
        info["index_dir"] = ""
    return JSONResponse(status_code=200 if info["ready"] else 503, content=Ready(**info).model_dump())


@router.get("/metrics", dependencies=[Depends(require_admin)], response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                       401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
def metrics(m: MetricsDep) -> Response:
    """Prometheus text format: request counts, latency per endpoint and per stage, refusals, the
    default collection's size (with keys configured: an admin key)."""
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
