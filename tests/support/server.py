"""The service as users run it on 127.0.0.1: `image-utility serve` in a child process, or the same
uvicorn with the same options in a thread; and raw HTTP/1.1 over a socket."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

from app import server
from app.main import create_app
from app.settings import Settings
from bench.service import free_port

__all__ = ["ROOT", "free_port", "read_response", "start_server", "uvicorn_thread", "wait_closed", "wait_ready"]
ROOT = Path(__file__).resolve().parents[2]


def start_server(models_dir: Path, port: int, **env: str) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "UTILITY_PROVIDERS": "CPUExecutionProvider", **env}
    cmd = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        [*cmd, "--models-dir", str(models_dir)],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{proc.stdout.read()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become ready")


@contextlib.contextmanager
def uvicorn_thread(settings: Settings) -> Iterator[tuple[str, int]]:
    """The app under uvicorn as `serve` runs it (app.server's protocol and limits), in a thread on a
    loopback port; yields (base URL, port)."""
    config = uvicorn.Config(create_app(settings), **{**server.options(settings), "host": "127.0.0.1", "port": 0})
    running = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not running.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = sock.getsockname()[1]
        yield f"http://127.0.0.1:{port}", port
    finally:
        running.should_exit = True
        thread.join(15)
        sock.close()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length: (status, lower-cased headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"connection closed before a full response head: {data!r}"
        data += more
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", "0")):
        more = sock.recv(65536)
        assert more, "connection closed inside the body"
        body += more
    return int(lines[0].split(" ")[1]), headers, body


def wait_closed(sock: socket.socket, timeout: float) -> float:
    """Seconds until the server closes ``sock`` (EOF or reset); fails after ``timeout``."""
    start = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start
