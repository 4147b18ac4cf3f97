"""Health, readiness, model listing and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import RegistryDep
from app.api.schemas import Readiness

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict:
    return {"status": "alive"}


@router.get(
    "/readyz",
    summary="Readiness: every model loaded and warmed up",
    responses={503: {"model": Readiness, "description": "Not ready, with the reason"}},
)
async def readyz(registry: RegistryDep) -> JSONResponse:
    ready, reason = registry.readiness()
    body = {"status": "ready" if ready else "not ready", "detail": reason, "models": sorted(registry.models)}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/models", summary="Loaded models: task, version, input, preprocessing, provider, training summary")
async def models(registry: RegistryDep) -> dict:
    return {
        "default": registry.default_name,
        "models": [m.model.describe() for _, m in sorted(registry.models.items())],
        "failed": [{"name": n, "reason": why} for n, why in sorted(registry.failures.items())],
    }


@router.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
