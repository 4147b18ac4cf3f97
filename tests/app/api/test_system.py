"""GET /healthz, /readyz, /models, /metrics and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import METRIC_CONTRACT, RED, image_bytes, make_settings, make_tiny_model, metric_value, serve

pytestmark = pytest.mark.anyio


async def test_readiness_follows_the_models(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    async with serve(make_settings(empty)) as c:
        r = await c.get("/readyz")
        assert r.status_code == 503 and "no models" in r.json()["detail"]
        assert (await c.get("/healthz")).status_code == 200
        r = await c.post("/utility", content=image_bytes(RED), headers={"content-type": "image/jpeg"})
        assert r.status_code == 503
    make_tiny_model(empty, "tiny")
    async with serve(make_settings(empty)) as c:
        assert (await c.get("/readyz")).json()["status"] == "ready"


async def test_broken_model_is_reported_and_others_still_served(models_dir: Path):
    broken = models_dir / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.onnx").write_bytes(b"this is not onnx")
    async with serve(make_settings(models_dir, default_model="tiny")) as c:
        r = await c.get("/readyz")
        assert r.status_code == 503 and "broken" in r.json()["detail"]
        assert (
            await c.post("/utility?model=tiny", content=image_bytes(RED), headers={"content-type": "image/jpeg"})
        ).status_code == 200
        assert (await c.get("/models")).json()["failed"][0]["name"] == "broken"


async def test_models_and_metrics_describe_the_service(client):
    await client.post("/utility", content=image_bytes(RED), headers={"content-type": "image/jpeg"})
    info = (await client.get("/models")).json()
    model = info["models"][0]
    assert info["default"] == "tiny"
    assert model["input_size"] == [3, 32, 32] and model["task"] == "classification"
    assert model["preprocessing"]["mean"] == [0.5, 0.5, 0.5] and model["training"]["note"]
    text = (await client.get("/metrics")).text
    for name in METRIC_CONTRACT:
        assert name in text, name
    assert metric_value(text, "utility_requests_total", route="/utility", status="200") >= 1
    assert (
        metric_value(text, "utility_model_info", model="tiny", version="test-1", provider="CPUExecutionProvider") == 1
    )


async def test_openapi_documents_routes_and_errors(client):
    spec = (await client.get("/openapi.json")).json()
    post = spec["paths"]["/utility"]["post"]
    assert {"multipart/form-data", "image/jpeg", "image/png"} <= set(post["requestBody"]["content"])
    assert {"400", "404", "413", "415", "422", "429", "503", "504"} <= set(post["responses"])
    assert {"/utility/batch", "/healthz", "/readyz", "/models", "/metrics"} <= set(spec["paths"])
