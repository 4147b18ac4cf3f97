"""docker/nginx/nginx.conf: `nginx -t` on the file as shipped, then nginx in front of two replicas on loopback."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import httpx
from support import BLUE, RED, image_bytes, make_tiny_model, metric_value
from support.deploy import DOCKER, free_port, image_entry_command, need_tool, run, running, wait_until

CONF = DOCKER / "nginx" / "nginx.conf"


def test_nginx_accepts_the_shipped_config(tmp_path: Path):
    nginx = need_tool("nginx", "apt-get install nginx-light")
    result = run([nginx, "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(CONF)])
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


def loopback_conf(tmp: Path, listen: int, replicas: list[int]) -> str:
    """The shipped file with Docker's DNS name swapped for a group of loopback replicas, and local paths."""
    text = CONF.read_text()
    text, n = re.subn(r"set \$utility_backend http://utility:8000;", "set $utility_backend http://replicas;", text)
    assert n == 1, "the backend line changed: update this test"
    servers = "".join(f"        server 127.0.0.1:{port};\n" for port in replicas)
    text = text.replace("http {\n", f"http {{\n    upstream replicas {{\n{servers}    }}\n", 1)
    text, n = re.subn(r"listen 8000;", f"listen 127.0.0.1:{listen};", text)
    assert n == 1
    text = text.replace("pid /tmp/nginx.pid;", f"pid {tmp}/nginx.pid;\ndaemon off;")
    temp = f"    client_body_temp_path {tmp}/body;\n    proxy_temp_path {tmp}/proxy;\n"
    text = text.replace("http {\n", "http {\n" + temp, 1)
    if os.geteuid() == 0:  # workers would drop to `nobody`, who cannot enter pytest's private tmp folders
        text = "user root;\n" + text
    return text


def test_nginx_spreads_requests_over_replicas(tmp_path: Path):
    nginx = need_tool("nginx", "apt-get install nginx-light")
    models = tmp_path / "models"
    make_tiny_model(models, "tiny")
    with contextlib.ExitStack() as stack:
        bases = []
        for i in range(2):
            home = tmp_path / f"replica{i}"
            home.mkdir()
            base, _env = stack.enter_context(image_entry_command(models, home))
            bases.append(base)
        for base in bases:
            wait_until(lambda b=base: httpx.get(f"{b}/readyz", timeout=1).status_code == 200, 60, "replica ready")
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(loopback_conf(tmp_path, port, [int(b.rsplit(":", 1)[1]) for b in bases]))
        assert run([nginx, "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)]).returncode == 0
        lb = f"http://127.0.0.1:{port}"
        proc = stack.enter_context(running([nginx, "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)], {}, tmp_path))
        wait_until(lambda: httpx.get(f"{lb}/lb-health", timeout=1).status_code == 200, 20, "nginx", proc)

        n = 20
        with httpx.Client(base_url=lb, timeout=10) as client:
            for i in range(n):
                color = RED if i % 2 == 0 else BLUE
                r = client.post("/utility", files={"file": ("x.jpg", image_bytes(color), "image/jpeg")})
                assert r.status_code == 200 and r.json()["useful"] is (color == RED), r.text
                assert r.headers["x-request-id"]  # the replica's header passes through
            assert client.get("/readyz").status_code == 200

        served = [metric_value(httpx.get(f"{b}/metrics", timeout=5).text, "utility_requests_total", route="/utility")
                  for b in bases]  # fmt: skip
        print(f"\nrequests per replica behind nginx: {served}")
        assert sum(served) == n and min(served) > 0, served  # both replicas served, nothing lost or replayed
