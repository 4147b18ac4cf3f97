"""Connection limits of the real server (app/server.py) over real loopback sockets.

Each test bounds itself: a socket timeout on every wait, a handful of connections (50 at most).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import make_settings
from support.server import read_response, uvicorn_thread, wait_closed

RECEIPT_S = 0.6
IDLE_S = 0.4
SLACK_S = 1.0  # the goal: closed within the deadline + 1 s
GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
POST_JPEG = b"POST /utility HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"


@contextlib.contextmanager
def service(models_dir: Path, **limits: float) -> Iterator[int]:
    settings = make_settings(models_dir, **{"request_timeout_s": RECEIPT_S, "idle_timeout_s": IDLE_S, **limits})
    with uvicorn_thread(settings) as (_, port):
        yield port


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=RECEIPT_S + IDLE_S + SLACK_S + 5)


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param(b"POST /utility HTTP/1.1\r\nHost: x\r\n", id="headers-unfinished"),
        pytest.param(b"POST /u", id="request-line-unfinished"),
        pytest.param(
            POST_JPEG + b"Content-Length: 1000\r\n\r\n" + b"\xff" * 10,
            id="body-unfinished",
        ),
    ],
)
def test_an_unfinished_request_gets_408_and_its_connection_is_closed(models_dir: Path, partial: bytes):
    with service(models_dir) as port, connect(port) as sock:
        start = time.monotonic()
        sock.sendall(partial)
        status, headers, body = read_response(sock)
        assert status == 408 and headers["connection"] == "close"
        assert "not received within" in json.loads(body)["detail"]
        assert RECEIPT_S - 0.1 <= time.monotonic() - start <= RECEIPT_S + SLACK_S
        wait_closed(sock, SLACK_S)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused cleanly: no answer, no hang
            sock.sendall(GET)
            assert sock.recv(1024) == b""


def test_connections_that_send_nothing_are_closed_after_the_idle_timeout(models_dir: Path):
    with service(models_dir) as port:
        silent = [connect(port) for _ in range(50)]
        with connect(port) as busy:  # normal requests go on meanwhile
            busy.sendall(GET)
            assert read_response(busy)[0] == 200
        try:
            start = time.monotonic()
            for sock in silent:
                wait_closed(sock, IDLE_S + SLACK_S)
            assert time.monotonic() - start <= IDLE_S + SLACK_S
        finally:
            for sock in silent:
                sock.close()


def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(models_dir: Path):
    with service(models_dir) as port, connect(port) as sock:
        for _ in range(2):
            sock.sendall(GET)
            assert read_response(sock)[0] == 200
        assert wait_closed(sock, IDLE_S + SLACK_S) >= IDLE_S - 0.1


def test_beyond_max_connections_a_json_503_closes_the_connection(models_dir: Path):
    with service(models_dir, max_connections=3, idle_timeout_s=30) as port:
        held = [connect(port) for _ in range(3)]
        try:
            for sock in held:  # answered: the server has counted each of them
                sock.sendall(GET)
                assert read_response(sock)[0] == 200
            with connect(port) as extra:
                extra.sendall(GET)
                status, headers, body = read_response(extra)
                assert status == 503 and headers["connection"] == "close" and headers["retry-after"] == "1"
                assert "too many open connections" in json.loads(body)["detail"]
                wait_closed(extra, SLACK_S)
            held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_response(held[0])[0] == 200
            wait_closed(held[0], SLACK_S)  # the server forgets a connection before its socket closes
            with connect(port) as again:
                again.sendall(GET)
                assert read_response(again)[0] == 200
        finally:
            for sock in held:
                sock.close()


def test_413_from_the_header_closes_the_connection_with_the_body_unread(models_dir: Path):
    with service(models_dir, max_body_bytes=4096) as port, connect(port) as sock:
        sock.sendall(POST_JPEG + b"Content-Length: 1000000\r\n\r\n")
        status, headers, body = read_response(sock)
        assert status == 413 and headers["connection"] == "close" and "over the limit" in json.loads(body)["detail"]
        wait_closed(sock, SLACK_S)
