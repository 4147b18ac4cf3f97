"""The raw-body fast path of POST /utility answers exactly as the FastAPI route does, and only for its case."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from support import BLUE, RED, hostile, image_bytes, make_settings, metric_value

from app.api import assessment
from app.api.errors import PayloadError
from app.api.fastpath import UtilityFastPath, parse_query
from app.main import create_app

pytestmark = pytest.mark.anyio
JPEG = {"content-type": "image/jpeg"}


@contextlib.asynccontextmanager
async def app_client(models_dir: Path, fast: bool, **settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(models_dir, **settings))
    if not fast:  # the middleware stack is built at the first request: this app has the route only
        app.user_middleware = [m for m in app.user_middleware if m.cls is not UtilityFastPath]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            yield client


CASES = [
    ("red", "", JPEG, image_bytes(RED)),
    ("blue png", "", {"content-type": "image/png"}, image_bytes(BLUE, fmt="PNG")),
    ("threshold", "?threshold=0.999", JPEG, image_bytes(RED)),
    ("model named", "?model=tiny&threshold=0", JPEG, image_bytes(BLUE)),
    ("unknown model", "?model=nope", JPEG, image_bytes(RED)),
    ("threshold out of range", "?threshold=1.5", JPEG, image_bytes(RED)),
    ("threshold nan", "?threshold=nan", JPEG, image_bytes(RED)),
    ("threshold twice", "?threshold=0.2&threshold=0.9", JPEG, image_bytes(RED)),
    ("other parameter", "?verbose=1", JPEG, image_bytes(RED)),
    ("empty model", "?model=", JPEG, image_bytes(RED)),
    ("octet-stream", "", {"content-type": "application/octet-stream"}, image_bytes(RED)),
    ("content type with parameters", "", {"content-type": "Image/JPEG; charset=binary"}, image_bytes(RED)),
    ("not an image", "", JPEG, b"hello, this is not a jpeg"),
    ("empty body", "", JPEG, b""),
    ("truncated", "", JPEG, hostile.truncated_jpeg("half")),
    ("too many pixels", "", JPEG, hostile.jpeg_declaring(30000, 30000)),
    ("text body", "", {"content-type": "text/plain"}, b"red"),
    ("no content type", "", {}, image_bytes(RED)),
]


@pytest.mark.parametrize(("name", "query", "headers", "body"), CASES, ids=[c[0] for c in CASES])
async def test_both_paths_answer_alike(models_dir: Path, name: str, query: str, headers: dict, body: bytes):
    answers = []
    for fast in (True, False):
        async with app_client(models_dir, fast) as client:
            r = await client.post("/utility" + query, content=body, headers=headers)
            answers.append((r.status_code, r.json(), r.headers.get("content-type"), r.headers.get("retry-after")))
    assert answers[0] == answers[1], name


async def test_a_raw_image_skips_the_route_and_a_multipart_one_takes_it(models_dir: Path, monkeypatch):
    async def route_only(*args, **kwargs):
        raise PayloadError("the route's body reader ran")

    monkeypatch.setattr(assessment, "read_upload", route_only)

    def count(text: str, status: str) -> float:  # the registry is the process's: compare before and after
        return metric_value(text, "utility_requests_total", route="/utility", status=status)

    async with app_client(models_dir, fast=True) as client:
        before = (await client.get("/metrics")).text
        assert (await client.post("/utility", content=image_bytes(RED), headers=JPEG)).status_code == 200
        r = await client.post("/utility", files={"file": ("red.jpg", image_bytes(RED), "image/jpeg")})
        assert r.json() == {"detail": "the route's body reader ran"}  # multipart went to the route
        metrics = (await client.get("/metrics")).text
    assert count(metrics, "200") - count(before, "200") == 1  # the fast path's requests carry the route's labels
    assert count(metrics, "400") - count(before, "400") == 1


async def test_a_chunked_body_over_the_limit_is_refused_as_by_the_route(models_dir: Path):
    async def chunks() -> AsyncIterator[bytes]:  # no content-length: the limit applies as the body arrives
        for _ in range(5):
            yield b"\xff" * 1000

    answers = []
    for fast in (True, False):
        async with app_client(models_dir, fast, max_body_bytes=2048) as client:
            r = await client.post("/utility", content=chunks(), headers=JPEG)
            answers.append((r.status_code, r.json(), r.headers.get("connection")))
    assert answers[0] == answers[1] and answers[0][0] == 413


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (b"", (None, None)),
        (b"threshold=0.25", (None, 0.25)),
        (b"model=tiny", ("tiny", None)),
        (b"model=a%20b&threshold=1", ("a b", 1.0)),
        (b"threshold=1e-1", (None, 0.1)),
        (b"threshold=-0.1", None),
        (b"threshold=inf", None),
        (b"threshold=0x1", None),
        (b"threshold=%200.5", None),
        (b"threshold=0.5&threshold=0.5", None),
        (b"debug=1", None),
        (b"model=", None),
        (b"model=" + b"m" * 129, None),
        (b"&&", None),
    ],
)
def test_only_queries_the_route_would_take_as_is_stay_on_the_fast_path(raw: bytes, parsed):
    assert parse_query(raw) == parsed
