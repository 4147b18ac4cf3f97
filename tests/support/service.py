"""The service under test: settings for tiny models, the app reached in-process, its metrics read back."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from app.main import create_app
from app.settings import Settings

# the Prometheus series the service exports from its first request (gate series appear once the gate is used)
METRIC_CONTRACT = (
    "utility_requests_total",
    "utility_request_duration_seconds_bucket",
    "utility_queue_wait_seconds_bucket",
    "utility_inference_duration_seconds_bucket",
    "utility_batch_size_bucket",
    "utility_queue_depth",
    "utility_predictions_total",
    "utility_model_info",
)


def make_settings(models_dir: Path, **overrides) -> Settings:
    base = {"models_dir": models_dir, "providers": ["CPUExecutionProvider"], "log_json": False, "max_wait_ms": 5.0}
    return Settings(**{**base, **overrides})


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, reached through real HTTP semantics in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of one metric whose labels include the given ones."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
