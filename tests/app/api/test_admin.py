"""POST /admin/models/{name}/reload: token, swap under traffic, a failed reload keeps the old model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support import RED, image_bytes, make_settings, make_tiny_model, serve

pytestmark = pytest.mark.anyio


async def test_reload_swaps_the_model_without_failing_requests(models_dir: Path):
    token = "t" * 32
    async with serve(make_settings(models_dir, admin_token=token, max_wait_ms=2)) as c:
        auth = {"authorization": f"Bearer {token}"}
        assert (await c.post("/admin/models/tiny/reload")).status_code == 401
        assert (await c.post("/admin/models/tiny/reload", headers={"authorization": "Bearer wrong"})).status_code == 401
        assert (await c.post("/admin/models/nope/reload", headers=auth)).status_code == 404

        async def traffic() -> list[int]:
            data = image_bytes(RED)
            rs = [await c.post("/utility", content=data, headers={"content-type": "image/jpeg"}) for _ in range(30)]
            return [r.status_code for r in rs]

        make_tiny_model(models_dir, "tiny", version="test-2")  # new weights on disk
        codes, reload = await asyncio.gather(traffic(), c.post("/admin/models/tiny/reload", headers=auth))
        assert reload.status_code == 200 and reload.json()["version"] == "test-2"
        assert set(codes) == {200}
        onnx_file = models_dir / "tiny" / "1" / "model.onnx"
        onnx_file.write_bytes(b"corrupt")  # a failed reload keeps the old model
        r = await c.post("/admin/models/tiny/reload", headers=auth)
        assert r.status_code == 409 and "reload of 'tiny' failed" in r.json()["detail"]
        r = await c.post("/utility", content=image_bytes(RED), headers={"content-type": "image/jpeg"})
        assert r.status_code == 200 and r.json()["model"]["version"] == "test-2"
        assert (await c.get("/readyz")).status_code == 200


async def test_admin_routes_are_off_without_a_token(client):
    assert (await client.post("/admin/models/tiny/reload")).status_code == 404
