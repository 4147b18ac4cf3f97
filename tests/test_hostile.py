"""Hostile inputs: every one gets its documented 2xx/4xx, never a 5xx, and the service stays ready.

The image payloads come from tests/support/hostile.py (made by code). Each goes through ``/utility`` as
a raw body and as the multipart ``file``, and through ``/utility/batch`` as one item among good
ones (per-item errors). Request-level hostility (content types, multipart abuse, parameters,
request ids, bodies over the limit) is in the tables below; slow bodies and thousands of parts
also go through a real uvicorn on 127.0.0.1 with a raw socket.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from support import make_settings, make_tiny_model, serve
from support.hostile import CASES, Hostile, jpeg
from support.server import free_port, start_server, wait_ready

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")]
PAYLOADS = [pytest.param(h, id=h.id) for h in CASES]
ERROR_KEYS = {"detail", "request_id"}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def svc(tmp_path_factory) -> AsyncIterator[httpx.AsyncClient]:
    """One in-process service with default limits (only the batch item cap raised for the corpus)."""
    models = tmp_path_factory.mktemp("hostile") / "models"
    make_tiny_model(models, "tiny")
    async with serve(make_settings(models, max_batch_items=len(CASES) + 8)) as client:
        yield client


def check_answer(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.status_code < 500
    assert "traceback" not in r.text.lower()
    if status == 200:
        assert set(r.json()) >= {"useful", "p_useful", "model"}
    elif status != 422:  # FastAPI's validation body lists the bad parameters
        assert set(r.json()) <= ERROR_KEYS and r.json()["detail"]


async def assert_ready(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("case", PAYLOADS)
async def test_payload_as_raw_body_and_as_file_part(svc, case: Hostile):
    r = await svc.post("/utility", content=case.body, headers={"content-type": case.content_type})
    check_answer(r, case.status)
    r = await svc.post("/utility", files={"file": (f"{case.id}.bin", case.body, case.content_type)})
    check_answer(r, case.status)
    await assert_ready(svc)


async def test_whole_corpus_through_batch_gives_per_item_errors(svc):
    good = jpeg()
    files = [("files", ("good-first.jpg", good, "image/jpeg"))]
    files += [("files", (h.id, h.body, h.content_type)) for h in CASES]
    files += [("files", ("good-last.jpg", good, "image/jpeg"))]
    r = await svc.post("/utility/batch", files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["filename"] for x in results] == ["good-first.jpg", *(h.id for h in CASES), "good-last.jpg"]
    assert results[0]["useful"] is True and results[-1]["useful"] is True
    for h, item in zip(CASES, results[1:-1], strict=True):
        if h.status == 200:
            assert item.get("error") is None and 0 <= item["p_useful"] <= 1, (h.id, item)
        else:
            assert item["error"]["status"] == h.status and item["error"]["detail"], (h.id, item)
    await assert_ready(svc)


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "hostile-boundary") -> tuple[bytes, str]:
    """(name, filename or None, data) -> (body, content type); written by hand so it can be wrong."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def many_parts(n: int, filename: bool = True) -> dict:
    body, ctype = multipart([("files" if filename else "x", "a.jpg" if filename else None, b"x")] * n)
    return {"content": body, "headers": {"content-type": ctype}}


def raw_file_part(disposition: bytes, data: bytes) -> dict:
    body = (
        b"--b\r\nContent-Disposition: "
        + disposition
        + b"\r\nContent-Type: image/jpeg\r\n\r\n"
        + data
        + b"\r\n--b--\r\n"
    )
    return {"content": body, "headers": {"content-type": "multipart/form-data; boundary=b"}}


IMG = jpeg()
JPEG_HEADERS = {"content-type": "image/jpeg"}
# (id, path, request kwargs, status): the request-level half of the corpus
REQUESTS = [
    ("svg-as-svg", "/utility", {"content": b"<svg/>", "headers": {"content-type": "image/svg+xml"}}, 415),
    ("html-as-html", "/utility", {"content": b"<html/>", "headers": {"content-type": "text/html"}}, 415),
    ("json-body", "/utility", {"json": {"url": "http://169.254.169.254/latest/meta-data/"}}, 415),
    ("form-urlencoded", "/utility", {"data": {"file": "/etc/passwd"}}, 415),
    ("no-content-type", "/utility", {"content": IMG}, 415),
    ("octet-stream-image", "/utility", {"content": IMG, "headers": {"content-type": "application/octet-stream"}}, 200),
    ("content-type-params", "/utility", {"content": IMG, "headers": {"content-type": "IMAGE/JPEG; q=1; x=\x7f"}}, 200),
    ("multipart-no-file-part", "/utility", {"files": {"other": ("a.jpg", IMG, "image/jpeg")}}, 400),
    ("multipart-file-as-text-field", "/utility", {"data": {"file": "not a file"}, "files": {"x": ("x", b"", "")}}, 400),
    ("multipart-two-files", "/utility", many_parts(2), 413),
    ("multipart-5000-fields", "/utility", many_parts(5000, filename=False), 400),
    ("multipart-5000-files", "/utility", many_parts(5000), 413),
    (
        "multipart-wrong-boundary",
        "/utility",
        {
            "content": multipart([("file", "a.jpg", IMG)])[0],
            "headers": {"content-type": "multipart/form-data; boundary=zzz"},
        },
        400,
    ),
    ("multipart-no-boundary", "/utility", {"content": IMG, "headers": {"content-type": "multipart/form-data"}}, 400),
    (
        "multipart-unterminated",
        "/utility",
        {"content": multipart([("file", "a.jpg", IMG)])[0][:-30], "headers": {"content-type": multipart([])[1]}},
        400,
    ),
    (
        "multipart-non-utf8-filename",
        "/utility",
        raw_file_part(b'form-data; name="file"; filename="\xff\xfe\xc3(.jpg"', IMG),
        200,
    ),
    (
        "multipart-path-filename",
        "/utility",
        raw_file_part(b'form-data; name="file"; filename="../../etc/passwd"', IMG),
        200,
    ),
    (
        "multipart-huge-filename",
        "/utility",
        raw_file_part(b'form-data; name="file"; filename="' + b"A" * 100_000 + b'"', IMG),
        400,  # python-multipart refuses a 100 KB part header
    ),
    ("multipart-part-claims-html", "/utility", {"files": {"file": ("x.html", IMG, "text/html")}}, 200),
    ("threshold-above-1", "/utility?threshold=1.5", {"content": IMG, "headers": JPEG_HEADERS}, 422),
    ("threshold-negative", "/utility?threshold=-0.1", {"content": IMG, "headers": JPEG_HEADERS}, 422),
    ("threshold-nan", "/utility?threshold=nan", {"content": IMG, "headers": JPEG_HEADERS}, 422),
    ("threshold-inf", "/utility?threshold=inf", {"content": IMG, "headers": JPEG_HEADERS}, 422),
    ("threshold-minus-inf", "/utility?threshold=-inf", {"content": IMG, "headers": JPEG_HEADERS}, 422),
    ("threshold-1e400", "/utility?threshold=1e400", {"content": IMG, "headers": JPEG_HEADERS}, 422),
    ("threshold-text", "/utility?threshold=abc", {"content": IMG, "headers": JPEG_HEADERS}, 422),
    ("threshold-empty", "/utility?threshold=", {"content": IMG, "headers": JPEG_HEADERS}, 422),
    ("threshold-twice", "/utility?threshold=0.2&threshold=0.3", {"content": IMG, "headers": JPEG_HEADERS}, 200),
    ("threshold-0", "/utility?threshold=0", {"content": IMG, "headers": JPEG_HEADERS}, 200),
    ("threshold-1", "/utility?threshold=1", {"content": IMG, "headers": JPEG_HEADERS}, 200),
    ("model-unknown", "/utility?model=nope", {"content": IMG, "headers": JPEG_HEADERS}, 404),
    ("model-path-traversal", "/utility?model=../../etc/passwd", {"content": IMG, "headers": JPEG_HEADERS}, 404),
    ("model-absolute-path", "/utility?model=/etc/passwd", {"content": IMG, "headers": JPEG_HEADERS}, 404),
    ("model-url", "/utility?model=http://169.254.169.254/", {"content": IMG, "headers": JPEG_HEADERS}, 404),
    ("model-nul", "/utility?model=tiny%00", {"content": IMG, "headers": JPEG_HEADERS}, 404),
    ("model-too-long", "/utility?model=" + "a" * 129, {"content": IMG, "headers": JPEG_HEADERS}, 422),
    ("model-empty-means-default", "/utility?model=", {"content": IMG, "headers": JPEG_HEADERS}, 200),
    (
        "body-over-limit-declared",
        "/utility",
        {"content": b"\xff" * (20 * 1024 * 1024 + 1), "headers": JPEG_HEADERS},
        413,
    ),
    ("get-utility", "/utility", {"method": "GET"}, 405),
    ("batch-not-multipart", "/utility/batch", {"content": IMG, "headers": JPEG_HEADERS}, 415),
    ("batch-no-files", "/utility/batch", {"files": {"file": ("a.jpg", IMG, "image/jpeg")}}, 400),
    ("batch-5000-parts", "/utility/batch", many_parts(5000), 413),
    ("batch-5000-fields", "/utility/batch", many_parts(5000, filename=False), 400),
    ("batch-threshold-nan", "/utility/batch?threshold=nan", {"files": {"files": ("a.jpg", IMG, "image/jpeg")}}, 422),
    (
        "batch-model-traversal",
        "/utility/batch?model=..%2F..%2Fetc",
        {"files": {"files": ("a.jpg", IMG, "image/jpeg")}},
        404,
    ),
]


@pytest.mark.parametrize(("path", "kwargs", "status"), [pytest.param(*r[1:], id=r[0]) for r in REQUESTS])
async def test_hostile_request(svc, path: str, kwargs: dict, status: int):
    kwargs = dict(kwargs)
    r = await svc.request(kwargs.pop("method", "POST"), path, **kwargs)
    if status == 405:
        assert r.status_code == 405
    else:
        check_answer(r, status)
    await assert_ready(svc)


async def test_streamed_body_over_the_limit_without_content_length(svc):
    async def chunks():
        for _ in range(25):  # 25 MB, over the 20 MiB default
            yield b"\xff" * (1024 * 1024)

    r = await svc.post("/utility", content=chunks(), headers=JPEG_HEADERS)
    check_answer(r, 413)
    await assert_ready(svc)


@pytest.mark.parametrize(
    ("given", "echoed"),
    [
        pytest.param("abc-123.X_y", True, id="safe"),
        pytest.param("a" * 65, False, id="too-long"),
        pytest.param("x\tSet-Cookie: a=b", False, id="header-injection-attempt"),
        pytest.param('"><script>alert(1)</script>', False, id="html"),
        pytest.param("é" * 5, False, id="non-ascii"),
        pytest.param("", False, id="empty"),
    ],
)
async def test_request_id_is_echoed_only_when_safe(svc, given: str, echoed: bool):
    r = await svc.post("/utility", content=IMG, headers={**JPEG_HEADERS, "x-request-id": given.encode("utf-8")})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    assert (rid == given) is echoed
    assert len(rid) <= 64 and rid.replace("-", "").replace("_", "").replace(".", "").isalnum()
    assert "set-cookie" not in r.headers


# ---- a real uvicorn on 127.0.0.1: slow bodies, thousands of parts, raw-socket abuse ----

LIMIT = 1024 * 1024
TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Iterator[tuple[str, int]]:
    models = tmp_path_factory.mktemp("hostile-real") / "models"
    make_tiny_model(models, "tiny")
    port = free_port()
    env = {"UTILITY_MAX_BODY_BYTES": str(LIMIT), "UTILITY_REQUEST_TIMEOUT_S": str(TIMEOUT_S)}
    proc = start_server(models, port, **env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield base, port
        assert proc.poll() is None, "the server died"
    finally:
        proc.kill()
        logs = proc.communicate(timeout=10)[0]
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert records, logs[-2000:]
    assert not [r for r in records if r.get("status", 0) >= 500 or r["level"] in ("ERROR", "CRITICAL")]
    assert all(r.get("request_id") for r in records if r["logger"] == "app.access")


def raw_exchange(port: int, head: bytes, chunks: Iterator[bytes], deadline_s: float) -> tuple[int, float]:
    """Send ``head`` then ``chunks`` (as chunked transfer encoding) until the server answers; its status."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=deadline_s) as s:
        s.sendall(head)
        s.setblocking(False)
        reply = b""
        for chunk in chunks:
            if time.monotonic() - start > deadline_s:
                break
            with contextlib.suppress(BlockingIOError):
                reply += s.recv(65536)
            if reply:
                break
            with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunk else b"")
        s.setblocking(True)
        s.settimeout(max(0.1, deadline_s - (time.monotonic() - start)))
        while b"\r\n\r\n" not in reply:
            more = s.recv(65536)
            if not more:
                break
            reply += more
    return int(reply.split(b" ", 2)[1]), time.monotonic() - start


def slow_chunks(size: int, pause: float, count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield b"\xff" * size
        time.sleep(pause)


HEAD = b"POST /utility HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_slow_body_over_the_limit_gets_413_once_the_limit_is_crossed(real):
    base, port = real
    # 64 KiB every 50 ms, no Content-Length: 1 MiB is crossed after ~0.8 s, well before the 2 s timeout
    status, took = raw_exchange(port, HEAD, slow_chunks(64 * 1024, 0.05, 200), deadline_s=8)
    assert status == 413 and took < TIMEOUT_S + 1
    assert httpx.get(f"{base}/readyz").status_code == 200


def test_too_slow_body_gets_408(real):
    base, port = real
    # 1 KiB every 0.4 s never reaches the limit; the body timeout (2 s) answers 408
    status, took = raw_exchange(port, HEAD, slow_chunks(1024, 0.4, 40), deadline_s=10)
    assert status == 408 and TIMEOUT_S - 0.2 < took < TIMEOUT_S + 2
    assert httpx.get(f"{base}/readyz").status_code == 200


def test_declared_oversize_is_refused_before_the_body_is_read(real):
    base, port = real
    head = b"POST /utility HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 99999999999\r\n\r\n"
    status, took = raw_exchange(port, head, iter([]), deadline_s=5)
    assert status == 413 and took < 2
    assert httpx.get(f"{base}/readyz").status_code == 200


@pytest.mark.parametrize(
    ("path", "parts", "filename", "status"),
    [
        pytest.param("/utility/batch", 3000, True, 413, id="batch-3000-files"),
        pytest.param("/utility", 3000, True, 413, id="single-3000-files"),
        pytest.param("/utility", 3000, False, 400, id="single-3000-fields"),
    ],
)
def test_thousands_of_parts_over_a_real_socket(real, path, parts, filename, status):
    base, _ = real
    kw = many_parts(parts, filename)
    assert len(kw["content"]) < LIMIT
    r = httpx.post(base + path, **kw, timeout=10)
    assert r.status_code == status, r.text
    assert httpx.get(f"{base}/readyz").status_code == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"POST /utility HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\r\nX-Evil: 1\r\n\r\n", id="extra-header"),
        pytest.param(
            b"POST /utility HTTP/1.1\r\nHost: x\r\nX-Request-ID: \x01\xff\x7f\r\n\r\n", id="control-bytes-in-id"
        ),
        pytest.param(
            b"POST /utility HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            id="two-lengths",
        ),
        pytest.param(b"POST /utility HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", id="negative-length"),
        pytest.param(
            b"POST /utility HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100\r\n\r\nab",
            id="short-body",
        ),
        pytest.param(b"GARBAGE\r\n\r\n", id="not-http"),
        pytest.param(b"POST /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="100k-path"),
    ],
)
def test_raw_socket_abuse_never_5xx(real, request_bytes: bytes):
    base, port = real
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request_bytes)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        try:
            while chunk := s.recv(65536):
                reply += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    if reply:  # the server may also just close the connection
        status = int(reply.split(b" ", 2)[1])
        assert 400 <= status < 500, reply[:300]
        assert b"x-evil" not in reply.lower().split(b"\r\n\r\n")[0]
    assert httpx.get(f"{base}/readyz").status_code == 200


def test_whole_corpus_over_real_http(real):
    """What the acceptance check does: the corpus against `image-utility serve`, then /readyz."""
    base, _ = real
    with httpx.Client(base_url=base, timeout=20) as c:
        for h in CASES:
            if len(h.body) >= LIMIT:
                continue
            r = c.post("/utility", content=h.body, headers={"content-type": h.content_type})
            assert r.status_code == h.status, (h.id, r.text)
            assert set(json.loads(r.text)) <= ERROR_KEYS if h.status != 200 else True
        assert c.get("/readyz").status_code == 200


async def test_admin_name_is_never_a_path(tmp_path: Path):
    """The admin route takes a model *name*; traversal attempts are refused (here with the token)."""
    make_tiny_model(tmp_path, "tiny")
    token = "k" * 32
    async with serve(make_settings(tmp_path, admin_token=token)) as c:
        auth = {"authorization": f"Bearer {token}"}
        for name in ("..", "..%2F..%2Fetc", ".hidden", "%2Fetc%2Fpasswd", "tiny%00", "tiny%2F..%2F.."):
            r = await c.post(f"/admin/models/{name}/reload", headers=auth)
            assert r.status_code in (404, 422), (name, r.status_code)
        assert (await c.get("/readyz")).status_code == 200
