"""The Python client against the real app: async in-process, sync against a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from pathlib import Path

import httpx
import pytest
from support import BLUE, RED, image_bytes, make_settings, make_tiny_model, metric_value, serve
from support.server import uvicorn_thread

from app.client import (
    AsyncUtilityClient,
    ItemError,
    ModelInfo,
    UtilityClient,
    UtilityConnectionError,
    UtilityError,
    UtilityResult,
    UtilityTimeoutError,
)
from app.settings import Settings

TINY = ModelInfo("tiny", "test-1", "classification")


@contextlib.asynccontextmanager
async def async_client(settings: Settings, **kwargs):
    async with serve(settings) as c:
        transport = httpx.ASGITransport(app=c.app)
        async with AsyncUtilityClient("http://test", transport=transport, **kwargs) as utility:
            utility.http = c  # type: ignore[attr-defined]  # the plain client, for /metrics
            yield utility


@pytest.mark.anyio
async def test_async_single_and_batch_with_typed_results(models_dir: Path, tmp_path: Path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes((120, 100, 100), fmt="PNG"))  # slightly red: 0.5 < p_useful < 1
    async with async_client(make_settings(models_dir), batch_size=2) as utility:
        red = await utility.assess(image_bytes(RED))
        assert isinstance(red, UtilityResult) and red.useful and red.label == "useful"
        assert red.model == TINY and red.confidence > 0.9 and red.threshold == 0.5
        with pytest.raises(dataclasses.FrozenInstanceError):
            red.useful = False  # type: ignore[misc]
        strict = await utility.assess(photo, threshold=0.999)
        assert strict.threshold == 0.999 and not strict.useful and 0.5 < strict.p_useful < 0.999
        images = [image_bytes(RED), image_bytes(BLUE), b"not an image", photo, image_bytes(BLUE, fmt="PNG")]
        results = await utility.assess_batch(images)
        assert [type(r) for r in results] == [UtilityResult, UtilityResult, ItemError, UtilityResult, UtilityResult]
        assert [getattr(r, "useful", None) for r in results] == [True, False, None, True, False]
        assert results[2].status == 400 and "not a supported image" in results[2].detail
        assert results[3].filename == "photo.png"


@pytest.mark.anyio
async def test_async_errors_are_typed(models_dir: Path):
    async with async_client(make_settings(models_dir)) as utility:
        with pytest.raises(UtilityError) as info:
            await utility.assess(image_bytes(RED), model="nope")
        assert info.value.status == 404 and "nope" in info.value.detail and info.value.request_id
        with pytest.raises(UtilityError) as info:
            await utility.assess(b"garbage")
        assert info.value.status == 400


@pytest.mark.anyio
async def test_async_retries_429_after_retry_after(tmp_path: Path):
    make_tiny_model(tmp_path, "slow", slow_matmuls=20)
    settings = make_settings(tmp_path, max_batch_size=1, queue_size=2, max_wait_ms=0)
    async with async_client(settings, retries=20, max_retry_wait=5) as utility:
        before = metric_value((await utility.http.get("/metrics")).text, "utility_rejected_total", reason="queue_full")
        start = time.monotonic()
        results = await asyncio.gather(*(utility.assess(image_bytes(RED)) for _ in range(8)))
        elapsed = time.monotonic() - start
        rejected = metric_value(
            (await utility.http.get("/metrics")).text, "utility_rejected_total", reason="queue_full"
        )
        assert all(r.useful for r in results)
        assert rejected - before >= 3  # the server did refuse, and every refusal was retried
        assert elapsed >= 1.0  # the retries waited for Retry-After: 1
    async with async_client(settings, retries=0) as utility:
        outcomes = await asyncio.gather(*(utility.assess(image_bytes(RED)) for _ in range(12)), return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, UtilityError)]
        assert refused and all(o.status == 429 and "queue is full" in o.detail for o in refused)


def test_sync_client_against_a_real_server(tmp_path: Path):
    make_tiny_model(tmp_path, "tiny")
    make_tiny_model(tmp_path, "slow", slow_matmuls=40)
    with uvicorn_thread(make_settings(tmp_path, default_model="tiny")) as (base, _), UtilityClient(base) as utility:
        assert utility.assess(image_bytes(RED)).useful
        results = utility.assess_batch([image_bytes(BLUE), image_bytes(RED)], threshold=0.2)
        assert [r.useful for r in results] == [False, True] and results[0].model == TINY
        with pytest.raises(UtilityError) as info:
            utility.assess(image_bytes(RED), threshold=3)
        assert info.value.status == 422 and info.value.detail[0]["loc"] == ["query", "threshold"]
        with UtilityClient(base, timeout=0.02) as impatient, pytest.raises(UtilityTimeoutError):
            impatient.assess(image_bytes(RED), model="slow")


def test_sync_client_retries_503_then_gives_up(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with uvicorn_thread(make_settings(empty)) as (base, _):
        before = metric_value(httpx.get(f"{base}/metrics", timeout=5).text, "utility_requests_total", status="503")
        with UtilityClient(base, retries=2, max_retry_wait=0.05) as utility, pytest.raises(UtilityError) as info:
            utility.assess(image_bytes(RED))
        assert info.value.status == 503 and "no models" in info.value.detail
        after = metric_value(httpx.get(f"{base}/metrics", timeout=5).text, "utility_requests_total", status="503")
        assert after - before == 3  # the first attempt and 2 retries


def test_unreachable_service_raises_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with UtilityClient(f"http://127.0.0.1:{port}", timeout=2) as utility, pytest.raises(UtilityConnectionError):
        utility.assess(image_bytes(RED))
