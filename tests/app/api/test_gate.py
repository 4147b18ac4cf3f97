"""The gate against a real upstream HTTP server on 127.0.0.1, with the service in-process."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from support import BLUE, RED, SLIGHTLY_BLUE, image_bytes, make_settings, make_tiny_model, metric_value, serve

from app.api.errors import GatePathError
from app.api.gate import upstream_url

pytestmark = pytest.mark.anyio


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    base: str
    seen: list[Seen] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    upstream: Upstream

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.upstream.seen.append(Seen("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        status = 503 if self.path.startswith("/fail") else 200
        answer = json.dumps({"labels": ["cat"], "n": len(self.upstream.seen)}).encode()
        with contextlib.suppress(ConnectionError):  # the gate may have given up on /slow already
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("x-upstream", "yes")
            self.send_header("set-cookie", "a=1")
            self.send_header("set-cookie", "b=2")
            self.send_header("connection", "keep-alive, x-private")
            self.send_header("x-private", "hop-by-hop")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@contextlib.contextmanager
def real_upstream() -> Iterator[Upstream]:
    """A tiny HTTP server on 127.0.0.1 that records every request it sees."""
    upstream = Upstream("")
    handler = type("Handler", (_Handler,), {"upstream": upstream})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    upstream.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with real_upstream() as u:
        yield u


def gate_settings(models_dir: Path, upstream: Upstream, **overrides):
    targets = {
        "vision": upstream.base,
        "api": upstream.base + "/api/v1/",
        "down": f"http://127.0.0.1:{closed_port()}",
    }
    return make_settings(models_dir, gate_targets=targets, gate_timeout_s=0.4, **overrides)


async def gate_count(c: httpx.AsyncClient, target: str, outcome: str) -> float:
    text = (await c.get("/metrics")).text
    return metric_value(text, "utility_gate_requests_total", target=target, outcome=outcome)


JPEG = {"content-type": "image/jpeg"}


async def test_only_useful_images_reach_the_upstream(models_dir: Path, upstream: Upstream):
    reds = [image_bytes(RED, size=(64 + i, 48)) for i in range(3)]
    blues = [image_bytes(BLUE, size=(64 + i, 48)) for i in range(2)]
    async with serve(gate_settings(models_dir, upstream)) as c:
        before = {o: await gate_count(c, "vision", o) for o in ("forwarded", "blocked")}
        headers = {**JPEG, "authorization": "Bearer abc", "cookie": "session=secret", "x-custom": "no"}
        answers = [await c.post("/gate/vision/predict?top=5", content=d, headers=headers) for d in reds + blues]
        for r in answers[:3]:
            assert r.status_code == 200, r.text
            assert r.json()["labels"] == ["cat"] and r.headers["x-upstream"] == "yes"
            assert r.headers.get_list("set-cookie") == ["a=1", "b=2"] and "x-private" not in r.headers
            assert r.headers["x-utility-verdict"].startswith("useful; p=")
            assert "model=tiny/test-1" in r.headers["x-utility-verdict"]
        for r in answers[3:]:
            assert r.status_code == 422
            body = r.json()
            assert body["detail"] == "image is not useful for machines"
            assert body["verdict"]["useful"] is False and body["verdict"]["model"]["name"] == "tiny"
            assert r.headers["x-utility-verdict"].startswith("non-useful; p=")
        assert [s.body for s in upstream.seen] == reds  # the blue images never left the service
        first = upstream.seen[0]
        assert first.path == "/predict?top=5"
        assert first.headers["content-type"] == "image/jpeg"
        assert first.headers["authorization"] == "Bearer abc"
        assert "cookie" not in first.headers and "x-custom" not in first.headers
        assert first.headers["x-request-id"] == answers[0].headers["x-request-id"]
        assert first.headers["x-forwarded-for"] == "127.0.0.1"
        assert await gate_count(c, "vision", "forwarded") - before["forwarded"] == 3
        assert await gate_count(c, "vision", "blocked") - before["blocked"] == 2


async def test_multipart_is_assessed_by_its_file_part_and_forwarded_unchanged(models_dir: Path, upstream: Upstream):
    async with serve(gate_settings(models_dir, upstream)) as c:
        files = {"file": ("red.jpg", image_bytes(RED), "image/jpeg")}
        request = c.build_request("POST", "/gate/api/detect", files=files, data={"note": "kept"})
        sent = request.read()
        r = await c.send(request)
        assert r.status_code == 200, r.text
        assert upstream.seen[0].path == "/api/v1/detect"
        assert upstream.seen[0].body == sent
        assert upstream.seen[0].headers["content-type"] == request.headers["content-type"]
        files = {"file": ("blue.jpg", image_bytes(BLUE), "image/jpeg")}
        assert (await c.post("/gate/api/detect", files=files)).status_code == 422
        assert len(upstream.seen) == 1


async def test_gate_parameters_are_read_and_not_forwarded(models_dir: Path, upstream: Upstream):
    data = image_bytes((120, 100, 100))  # slightly red: p_useful between 0.5 and 1
    async with serve(gate_settings(models_dir, upstream)) as c:
        r = await c.post("/gate/vision/run?utility_threshold=0.999&model=x", content=data, headers=JPEG)
        assert r.status_code == 422 and r.json()["verdict"]["threshold"] == 0.999
        r = await c.post(
            "/gate/vision/run?model=x&utility_threshold=0.1&utility_model=tiny", content=data, headers=JPEG
        )
        assert r.status_code == 200
        assert [s.path for s in upstream.seen] == ["/run?model=x"]
        r = await c.post("/gate/vision/run?utility_threshold=2", content=data, headers=JPEG)
        assert r.status_code == 422 and "utility_threshold" in r.text
        r = await c.post("/gate/vision/run?utility_model=nope", content=data, headers=JPEG)
        assert r.status_code == 404 and "nope" in r.json()["detail"]
        assert len(upstream.seen) == 1


async def test_the_models_default_threshold_decides_when_the_request_names_none(tmp_path: Path, upstream: Upstream):
    make_tiny_model(tmp_path, "lenient", gain=1.0, threshold=0.3)
    data = image_bytes(SLIGHTLY_BLUE)  # p_useful about 0.4
    async with serve(gate_settings(tmp_path, upstream)) as c:
        r = await c.post("/gate/vision/run", content=data, headers=JPEG)
        assert r.status_code == 200 and "threshold=0.3;" in r.headers["x-utility-verdict"]
        r = await c.post("/gate/vision/run?utility_threshold=0.5", content=data, headers=JPEG)
        assert r.status_code == 422 and r.json()["verdict"]["threshold"] == 0.5
    assert len(upstream.seen) == 1


async def test_upstream_answers_pass_through_and_failures_map_to_502_504(models_dir: Path, upstream: Upstream):
    red = image_bytes(RED)
    async with serve(gate_settings(models_dir, upstream)) as c:
        before = {
            "down": await gate_count(c, "down", "upstream_error"),
            "slow": await gate_count(c, "vision", "upstream_timeout"),
        }
        r = await c.post("/gate/vision/fail", content=red, headers=JPEG)
        assert r.status_code == 503 and r.json()["labels"] == ["cat"]  # the upstream's own answer
        assert r.headers["x-utility-verdict"].startswith("useful")
        r = await c.post("/gate/down/predict", content=red, headers=JPEG)
        assert r.status_code == 502 and "could not be reached" in r.json()["detail"]
        assert r.headers["x-utility-verdict"].startswith("useful")
        start = time.monotonic()
        r = await c.post("/gate/vision/slow", content=red, headers=JPEG)
        assert r.status_code == 504 and "did not answer in time" in r.json()["detail"]
        assert time.monotonic() - start < 0.9
        assert await gate_count(c, "down", "upstream_error") - before["down"] == 1
        assert await gate_count(c, "vision", "upstream_timeout") - before["slow"] == 1


async def test_unknown_target_and_bad_input_never_reach_the_upstream(models_dir: Path, upstream: Upstream):
    async with serve(gate_settings(models_dir, upstream)) as c:
        before = await gate_count(c, "vision", "bad_input")
        r = await c.post("/gate/elsewhere/predict", content=image_bytes(RED), headers=JPEG)
        assert r.status_code == 404 and "unknown gate target" in r.json()["detail"]
        r = await c.post("/gate/vision/predict", content=b"hello", headers={"content-type": "text/plain"})
        assert r.status_code == 415
        r = await c.post("/gate/vision/predict", content=b"\x00garbage" * 40, headers=JPEG)
        assert r.status_code == 400
        r = await c.post("/gate/vision/%2e%2e/admin", content=image_bytes(RED), headers=JPEG)
        assert r.status_code == 400 and "under the target" in r.json()["detail"]
        assert upstream.seen == []
        assert await gate_count(c, "vision", "bad_input") - before == 3


@pytest.mark.parametrize(
    ("base", "path", "query", "expected"),
    [
        pytest.param("http://h:9000/", "predict", "", "http://h:9000/predict", id="plain"),
        pytest.param("http://h:9000/", "", "", "http://h:9000/", id="root"),
        pytest.param(
            "http://h/api/v1/", "a b/c", "x=1&utility_threshold=0.3", "http://h/api/v1/a%20b/c?x=1", id="base"
        ),
        pytest.param("http://h/", "p", "utility_model=m&q=%20a+b&utility%5Fmodel=n", "http://h/p?q=%20a+b", id="query"),
    ],
)
def test_upstream_url_stays_under_the_base(base: str, path: str, query: str, expected: str):
    assert str(upstream_url(base, path, query)) == expected


@pytest.mark.parametrize("path", ["..", "a/../../b", "./a", "/evil.com/x", "http://evil.com/x", "a\\..\\b", "a\nb"])
def test_paths_that_would_leave_the_base_are_refused(path: str):
    with pytest.raises(GatePathError):
        upstream_url("http://h:9000/api/", path, "")
