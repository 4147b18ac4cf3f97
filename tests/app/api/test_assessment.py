"""POST /utility and /utility/batch, in-process through ASGITransport with the real lifespan."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import httpx
import pytest
from PIL import Image
from support import BLUE, RED, SLIGHTLY_BLUE, hostile, image_bytes, make_settings, make_tiny_model, metric_value, serve

from app.logging_setup import RequestIdFilter

pytestmark = pytest.mark.anyio


async def test_red_is_useful_blue_is_not(client):
    r = await client.post("/utility", files={"file": ("red.jpg", image_bytes(RED), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["useful"] is True and body["label"] == "useful"
    assert body["confidence"] == pytest.approx(body["p_useful"]) and body["p_useful"] > 0.9
    assert body["threshold"] == 0.5
    assert body["model"] == {"name": "tiny", "version": "test-1", "task": "classification"}
    r = await client.post("/utility", files={"file": ("blue.jpg", image_bytes(BLUE), "image/jpeg")})
    body = r.json()
    assert body["useful"] is False and body["label"] == "non-useful"
    assert body["confidence"] == pytest.approx(1 - body["p_useful"]) and body["confidence"] > 0.9


@pytest.mark.parametrize(
    ("fmt", "ctype"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
        ("GIF", "image/gif"),
    ],
)
async def test_raw_body_in_every_format(client, fmt, ctype):
    r = await client.post("/utility", content=image_bytes(RED, fmt=fmt), headers={"content-type": ctype})
    assert r.status_code == 200, r.text
    assert r.json()["useful"] is True


async def test_threshold_moves_the_verdict(client):
    data = image_bytes((120, 100, 100))  # slightly red: p_useful between 0.5 and 1
    low = (await client.post("/utility?threshold=0.1", content=data, headers={"content-type": "image/jpeg"})).json()
    p = low["p_useful"]
    assert 0.5 < p < 0.999
    high = (
        await client.post(
            f"/utility?threshold={min(1.0, p + 0.0005)}", content=data, headers={"content-type": "image/jpeg"}
        )
    ).json()
    assert low["useful"] is True and high["useful"] is False
    assert high["confidence"] == pytest.approx(1 - p, abs=1e-5)


@pytest.mark.parametrize(
    ("request_kwargs", "status", "needle"),
    [
        pytest.param(
            {"content": b"\x00garbage" * 50, "headers": {"content-type": "image/jpeg"}},
            400,
            "not a supported image",
            id="random-bytes",
        ),
        pytest.param(
            {"content": image_bytes(RED, size=(400, 300))[:700], "headers": {"content-type": "image/jpeg"}},
            400,
            "truncated",
            id="truncated",
        ),
        pytest.param({"content": b"", "headers": {"content-type": "image/png"}}, 400, "empty", id="empty"),
        pytest.param({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "not supported", id="text"),
        pytest.param(
            {"content": b"<svg/>", "headers": {"content-type": "image/svg+xml"}}, 415, "not supported", id="svg"
        ),
        pytest.param(
            {"files": {"other": ("a.jpg", image_bytes(RED), "image/jpeg")}}, 400, "'file' part", id="no-file-part"
        ),
    ],
)
async def test_bad_input_gets_a_clear_4xx(client, request_kwargs, status, needle):
    r = await client.post("/utility", **request_kwargs)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]
    assert (await client.get("/readyz")).status_code == 200


async def test_bad_parameters(client):
    data, headers = image_bytes(RED), {"content-type": "image/jpeg"}
    assert (await client.post("/utility?threshold=1.5", content=data, headers=headers)).status_code == 422
    assert (await client.post("/utility?threshold=abc", content=data, headers=headers)).status_code == 422
    r = await client.post("/utility?model=nope", content=data, headers=headers)
    assert r.status_code == 404 and "nope" in r.json()["detail"]


async def test_size_limits(models_dir: Path):
    async with serve(make_settings(models_dir, max_body_bytes=4096, max_pixels=10_000)) as c:
        big_body = image_bytes(RED, size=(400, 400), fmt="PNG")
        assert len(big_body) > 4096
        r = await c.post("/utility", content=big_body, headers={"content-type": "image/png"})
        assert r.status_code == 413 and "body" in r.json()["detail"]

        async def chunks():  # no content-length: the streamed byte count must trip the limit
            for _ in range(10):
                yield b"\xff" * 1024

        r = await c.post("/utility", content=chunks(), headers={"content-type": "image/jpeg"})
        assert r.status_code == 413
        # small file, many pixels: refused from the header, before decoding
        buf = io.BytesIO()
        Image.new("RGB", (200, 100), RED).save(buf, format="PNG")
        wide = buf.getvalue()
        assert len(wide) < 4096
        r = await c.post("/utility", content=wide, headers={"content-type": "image/png"})
        assert r.status_code == 413 and "pixels" in r.json()["detail"]
        assert (await c.get("/readyz")).status_code == 200


async def test_batch_keeps_order_and_isolates_errors(client):
    files = [
        ("files", ("a.jpg", image_bytes(RED), "image/jpeg")),
        ("files", ("b.png", image_bytes(BLUE, fmt="PNG"), "image/png")),
        ("files", ("bad.jpg", b"not an image at all", "image/jpeg")),
        ("files", ("c.webp", image_bytes(RED, fmt="WEBP"), "image/webp")),
    ]
    r = await client.post("/utility/batch", files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["filename"] for x in results] == ["a.jpg", "b.png", "bad.jpg", "c.webp"]
    assert [x.get("useful") for x in results] == [True, False, None, True]
    assert results[2]["error"]["status"] == 400 and results[0].get("error") is None


async def test_batch_item_limit(models_dir: Path):
    async with serve(make_settings(models_dir, max_batch_items=3)) as c:
        files = [("files", (f"{i}.jpg", image_bytes(RED), "image/jpeg")) for i in range(4)]
        r = await c.post("/utility/batch", files=files)
        assert r.status_code == 413 and "at most 3" in r.json()["detail"]
        r = await c.post("/utility/batch", files=files[:3])
        assert r.status_code == 200 and len(r.json()["results"]) == 3


async def test_concurrent_requests_are_batched_and_answered_in_their_own_order(models_dir: Path):
    async with serve(make_settings(models_dir, max_batch_size=16, max_wait_ms=50)) as c:
        before = (await c.get("/metrics")).text
        colors = [RED if i % 3 else BLUE for i in range(48)]
        payloads = [image_bytes(col, size=(40 + i, 30)) for i, col in enumerate(colors)]

        async def one(data: bytes) -> bool:
            r = await c.post("/utility", content=data, headers={"content-type": "image/jpeg"})
            assert r.status_code == 200, r.text
            return r.json()["useful"]

        answers = await asyncio.gather(*(one(p) for p in payloads))
        assert answers == [col == RED for col in colors]
        after = (await c.get("/metrics")).text
        calls = metric_value(after, "utility_batch_size_count", model="tiny") - metric_value(
            before, "utility_batch_size_count", model="tiny"
        )
        items = metric_value(after, "utility_batch_size_sum", model="tiny") - metric_value(
            before, "utility_batch_size_sum", model="tiny"
        )
        assert items == 48
        assert calls < 48, "requests were not batched"
        assert items / calls > 1.5


async def test_full_queue_gives_429_with_retry_after(tmp_path: Path):
    make_tiny_model(tmp_path, "slow", slow_matmuls=20)
    async with serve(make_settings(tmp_path, max_batch_size=1, queue_size=2, max_wait_ms=0)) as c:
        data = image_bytes(RED)
        rs = await asyncio.gather(
            *(c.post("/utility", content=data, headers={"content-type": "image/jpeg"}) for _ in range(24))
        )
        codes = [r.status_code for r in rs]
        assert set(codes) <= {200, 429}
        assert codes.count(429) >= 10 and codes.count(200) >= 2
        assert all(r.headers.get("retry-after") == "1" for r in rs if r.status_code == 429)
        assert "queue is full" in next(r for r in rs if r.status_code == 429).json()["detail"]
        assert (await c.post("/utility", content=data, headers={"content-type": "image/jpeg"})).status_code == 200


async def test_slow_inference_times_out_with_504(tmp_path: Path):
    make_tiny_model(tmp_path, "slow", slow_matmuls=30)
    async with serve(make_settings(tmp_path, request_timeout_s=0.02, max_wait_ms=0)) as c:
        r = await c.post("/utility", content=image_bytes(RED), headers={"content-type": "image/jpeg"})
        assert r.status_code == 504 and r.json()["detail"] == "inference timed out"


async def test_exif_rotation_is_applied(client):
    # left half red, right half blue; rotated 90 degrees by EXIF -> still decodes fine
    img = Image.new("RGB", (60, 40), RED)
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(buf, format="JPEG", exif=exif)
    r = await client.post("/utility", content=buf.getvalue(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["useful"] is True


async def test_the_models_default_threshold_applies_when_the_request_names_none(tmp_path: Path):
    make_tiny_model(tmp_path, "lenient", gain=1.0, threshold=0.3)
    data, jpeg = image_bytes(SLIGHTLY_BLUE), {"content-type": "image/jpeg"}
    async with serve(make_settings(tmp_path)) as c:
        default = (await c.post("/utility", content=data, headers=jpeg)).json()
        assert 0.35 < default["p_useful"] < 0.45
        assert default["useful"] is True and default["threshold"] == 0.3
        strict = (await c.post("/utility?threshold=0.5", content=data, headers=jpeg)).json()
        assert strict["useful"] is False and strict["threshold"] == 0.5
        batch = (await c.post("/utility/batch", files=[("files", ("a.jpg", data, "image/jpeg"))])).json()
        assert batch["results"][0]["useful"] is True and batch["results"][0]["threshold"] == 0.3
        listed = (await c.get("/models")).json()["models"]
        assert [(m["name"], m["default_threshold"]) for m in listed] == [("lenient", 0.3)]


async def test_a_model_with_a_malformed_threshold_is_not_served_and_readyz_names_the_key(models_dir: Path):
    make_tiny_model(models_dir, "odd", metadata={"utility.threshold": "often"})
    async with serve(make_settings(models_dir, default_model="tiny")) as c:
        r = await c.get("/readyz")
        assert r.status_code == 503 and "utility.threshold" in r.json()["detail"]
        assert (await c.get("/models")).json()["models"][0]["default_threshold"] == 0.5


async def test_an_image_too_costly_to_decode_is_a_fast_413_and_a_busy_budget_a_503(tmp_path: Path):
    make_tiny_model(tmp_path)
    async with serve(make_settings(tmp_path, max_decode_mb=64, decode_budget_mb=64)) as c:

        async def refused() -> float:
            return metric_value((await c.get("/metrics")).text, "utility_rejected_total", reason="decode_too_large")

        before = await refused()
        bomb = hostile.png(4000, 4000, 16, 6)  # 16 MP of 16-bit RGBA: ~250 MB to decode
        r = await c.post("/utility", content=bomb, headers={"content-type": "image/png"})
        assert r.status_code == 413 and "MB, over the limit of 64 MB" in r.json()["detail"]
        assert await refused() == before + 1
        budget = c.app.state.assessor.budget
        with budget.hold(budget.total, 1):  # the budget full for longer than a request waits
            c.app.state.assessor.timeout = 0.05
            r = await c.post("/utility", files={"file": ("red.png", image_bytes(RED, fmt="PNG"), "image/png")})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        c.app.state.assessor.timeout = 10.0
        r = await c.post("/utility", files={"file": ("red.png", image_bytes(RED, fmt="PNG"), "image/png")})
        assert r.status_code == 200 and budget.used == 0


async def test_a_decoders_own_log_lines_carry_the_request_id(client):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(RequestIdFilter())
    plugin = logging.getLogger("PIL.TiffImagePlugin")
    plugin.addHandler(handler)
    try:
        bad = hostile.tiff(16, 16, samples=1000)  # Pillow's TIFF plugin logs ERROR, then refuses it
        r = await client.post("/utility", content=bad, headers={"content-type": "image/tiff", "x-request-id": "tiff-1"})
    finally:
        plugin.removeHandler(handler)
    assert r.status_code == 400
    assert [rec.request_id for rec in records if rec.levelno >= logging.ERROR] == ["tiff-1"]


async def test_decodes_waiting_past_the_queue_size_are_a_quick_429(tmp_path: Path):
    make_tiny_model(tmp_path)
    settings = make_settings(tmp_path, max_batch_size=1, queue_size=2, decode_workers=1)
    async with serve(settings) as c:
        assessor = c.app.state.assessor
        body = image_bytes(RED, fmt="PNG")

        async def post() -> httpx.Response:
            return await c.post("/utility", content=body, headers={"content-type": "image/png"})

        with assessor.budget.hold(assessor.budget.total, 1):  # decodes block until this is released
            waiting = [asyncio.create_task(post()) for _ in range(2)]
            for _ in range(500):  # until both are in the decode pool
                if assessor._decoding == 2:
                    break
                await asyncio.sleep(0.01)
            assert assessor._decoding == 2
            r = await post()
            assert (
                r.status_code == 429
                and r.headers["retry-after"] == "1"
                and "decode queue is full" in r.json()["detail"]
            )
        assert [r.status_code for r in await asyncio.gather(*waiting)] == [200, 200]
        assert assessor._decoding == 0
