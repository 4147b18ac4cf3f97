"""The service as users run it: `image-utility serve` under a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from support import BLUE, RED, image_bytes
from support.server import free_port, start_server, wait_ready


@pytest.fixture
def server(models_dir: Path):
    port = free_port()
    proc = start_server(models_dir, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_real_server_answers_and_stops_cleanly(server):
    base, proc = server
    r = httpx.post(f"{base}/utility", files={"file": ("red.jpg", image_bytes(RED), "image/jpeg")}, timeout=10)
    assert r.status_code == 200 and r.json()["useful"] is True
    assert r.headers["x-request-id"]
    r = httpx.post(f"{base}/utility", content=image_bytes(BLUE), headers={"content-type": "image/jpeg"}, timeout=10)
    assert r.json()["useful"] is False
    assert "utility_requests_total" in httpx.get(f"{base}/metrics", timeout=5).text
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal so the parent sees it
    assert proc.wait(20) in (0, -signal.SIGTERM)
    logs = proc.stdout.read()
    assert "Application shutdown complete" in logs
    assert '"msg": "POST /utility 200"' in logs  # structured access log with the request id
    assert '"request_id"' in logs


def test_bad_settings_stop_the_service_with_a_clear_message(models_dir: Path):
    proc = start_server(models_dir, free_port(), UTILITY_MAX_BATCH_SIZE="0")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    want = "image-utility serve: UTILITY_MAX_BATCH_SIZE: Input should be greater than or equal to 1 (got '0')"
    assert out.strip() == want
