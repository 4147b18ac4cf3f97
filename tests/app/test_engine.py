"""One ONNX model on its execution provider."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support import RED, image_bytes, make_settings, serve

pytestmark = pytest.mark.anyio


async def test_cpu_fallback_when_cuda_is_asked_for(models_dir: Path, caplog):
    caplog.set_level(logging.WARNING, logger="app.engine")
    settings = make_settings(models_dir, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    async with serve(settings) as c:
        info = (await c.get("/models")).json()["models"][0]
        assert info["provider"] == "CPUExecutionProvider"
        assert (
            await c.post("/utility", content=image_bytes(RED), headers={"content-type": "image/jpeg"})
        ).status_code == 200
    lines = [r.getMessage() for r in caplog.records if "CUDAExecutionProvider" in r.getMessage()]
    assert len(lines) == 1 and "CPUExecutionProvider" in lines[0]
