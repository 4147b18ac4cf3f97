"""Request metrics and access logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support import RED, image_bytes, make_settings, metric_value, serve

pytestmark = pytest.mark.anyio


@pytest.mark.anyio
@pytest.mark.parametrize("access_log", [True, False])
async def test_access_log_can_be_switched_off_and_metrics_still_count(models_dir: Path, caplog, access_log: bool):
    caplog.set_level(logging.INFO, logger="app.access")
    jpeg = {"content-type": "image/jpeg"}
    async with serve(make_settings(models_dir, access_log=access_log)) as client:
        before = metric_value((await client.get("/metrics")).text, "utility_requests_total", route="/utility")
        for _ in range(3):
            assert (await client.post("/utility", content=image_bytes(RED), headers=jpeg)).is_success
        after = metric_value((await client.get("/metrics")).text, "utility_requests_total", route="/utility")
    lines = [r for r in caplog.records if r.name == "app.access" and r.getMessage() == "POST /utility 200"]
    assert len(lines) == (3 if access_log else 0)
    assert after - before == 3  # the registry is per process: count this test's requests only


JPEG = {"content-type": "image/jpeg"}


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "closes"),
    [
        pytest.param("/utility", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, True, id="415"),
        pytest.param("/utility?threshold=2", {"content": image_bytes(RED)}, 422, True, id="422-before-the-body"),
        pytest.param("/nowhere", {"content": image_bytes(RED)}, 404, True, id="404-route"),
        pytest.param("/utility", {"content": b"\x00garbage", "headers": JPEG}, 400, False, id="400-body-read"),
        pytest.param("/utility", {"content": image_bytes(RED), "headers": JPEG}, 200, False, id="200"),
    ],
)
async def test_an_error_sent_before_the_body_was_read_closes_the_connection(
    client, path: str, kwargs: dict, status: int, closes: bool
):
    r = await client.post(path, **kwargs)
    assert r.status_code == status
    assert (r.headers.get("connection") == "close") is closes
