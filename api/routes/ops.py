"""Operations: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import EngineDep, MetricsDep, require_api_key
from api.engine import ready_info
from api.schemas import ErrorOut, Health, Ready

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is alive (no auth, no index needed)."""
    return Health()


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}}, dependencies=[Depends(require_api_key)])
def readyz(engine: EngineDep):
    """Models and index loaded? With counts, models and whether a reranker is active; 503 until
    start-up has loaded everything, or when no index exists yet."""
    info = ready_info(engine)
    return JSONResponse(status_code=200 if info["ready"] else 503, content=Ready(**info).model_dump())


@router.get("/metrics", dependencies=[Depends(require_api_key)], response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                       401: {"model": ErrorOut}})
def metrics(m: MetricsDep) -> Response:
    """Prometheus text format: request counts, latency per endpoint and per stage, refusals."""
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
