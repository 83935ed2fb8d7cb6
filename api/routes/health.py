"""Probes and Prometheus metrics (no authentication)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsDep, require_metrics_token
from api.errors import error_body
from api.schemas import ErrorBody, Ready
from api.services.health import OK, readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    """The process answers; touches nothing else."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=Ready,
    responses={
        503: {"model": ErrorBody, "description": "a dependency is down; `checks` says which"}
    },
)
async def readyz(request: Request) -> Any:
    """The database answers and is migrated to head, the broker accepts connections and object
    storage is reachable."""
    state = request.app.state
    checks = await readiness(
        sessions=state.sessionmaker,
        head=state.head_revision,
        celery=state.celery,
        storage=state.storage,
    )
    failed = [name for name, result in checks.items() if result != OK]
    if failed:
        body = error_body("not_ready", f"not ready: {', '.join(failed)} failed")
        return JSONResponse(body | {"checks": checks}, status_code=503)
    return Ready(status="ready", checks=checks)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    dependencies=[Depends(require_metrics_token)],
    responses={
        200: {"content": {"text/plain": {}}, "description": "the Prometheus text format"},
        401: {"model": ErrorBody, "description": "METRICS_TOKEN is set and was not given"},
    },
)
def metrics(api_metrics: MetricsDep) -> Response:
    """Requests by route template, jobs by status and generation time, summed over every
    account: no tenant, job or model id ever appears in a label."""
    return Response(generate_latest(api_metrics.registry), media_type=CONTENT_TYPE_LATEST)
