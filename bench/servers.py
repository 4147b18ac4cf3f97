"""Which HTTP server: uvicorn as before, uvicorn with app/server.py's guards, Granian, Hypercorn.

    python -m bench.servers [--alt-path DIR] [--seconds 6] [--out bench/results/servers.json]

Each server runs the same app (``bench.asgi:app``, access log off) on the bundled model, on
127.0.0.1; each gets the same load at concurrency 16 and 64 (``bench.load``), then three
probes on real sockets: a request whose headers never end, one whose body never ends, and a
connection that never sends anything; each probe says how long the server held it (capped).
Granian and Hypercorn are not dependencies: install them into ``--alt-path`` (``pip install
--target DIR granian hypercorn``); a server that is not importable is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import service
from bench.common import REPO, default_image_source, make_jpegs, resolve_model, serve_dir

PROBE_CAP_S = 15.0
POST = b"POST /utility HTTP/1.1\r\nHost: x\r\n"
PROBES = {
    "headers_unfinished": POST,
    "body_unfinished": POST + b"Content-Type: image/jpeg\r\nContent-Length: 9999\r\n\r\nab",
    "silent": b"",
}
PY = [sys.executable, "-m"]
SERVERS = {
    "uvicorn": (None, [*PY, "uvicorn", "bench.asgi:app", "--port", "{port}", "--limit-concurrency", "1024"]),
    "uvicorn+guards": (None, [*PY, "app.cli", "serve", "--host", "127.0.0.1", "--port", "{port}"]),
    "granian": (
        "granian",
        [
            *PY,
            *("granian", "--interface", "asgi", "--port", "{port}", "--http1-header-read-timeout", "10000"),
            *("--backpressure", "1024", "--no-access-log", "bench.asgi:app"),
        ],
    ),
    "hypercorn": (
        "hypercorn",
        [*PY, "hypercorn", "bench.asgi:app", "--bind", "127.0.0.1:{port}", "--read-timeout", "10", "--keep-alive", "5"],
    ),
}


def held_for(port: int, data: bytes) -> float | None:
    """Seconds until the server closed a connection that sent ``data`` and then nothing; None: still open at the cap."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_CAP_S) as sock:
        sock.sendall(data)
        try:
            while sock.recv(65536):
                pass
        except TimeoutError:
            return None
        except ConnectionResetError:
            pass
    return round(time.monotonic() - start, 2)


def one_server(name: str, cmd: list[str], env: dict[str, str], images: Path, seconds: float, log: Path) -> dict:
    with service.server(cmd, "/readyz", env, log) as (base, pid):
        port = int(base.rsplit(":", 1)[1])
        runs = {c: service.measure(base, pid, images, c, seconds) for c in (16, 64)}
        with ThreadPoolExecutor(len(PROBES)) as pool:
            held = dict(zip(PROBES, pool.map(lambda d: held_for(port, d), PROBES.values()), strict=True))
    return {"server": name, "held_s": held, **{f"c{c}": _brief(r) for c, r in runs.items()}}


def _brief(run: dict) -> dict:
    keys = ("throughput_rps", "p50_ms", "p99_ms", "ok", "errors", "server_cpu_s")
    return {k: run.get(k) for k in keys}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__.split("\n")[0])
    p.add_argument("--alt-path", help="folder where granian and hypercorn are installed (pip install --target)")
    p.add_argument("--seconds", type=float, default=6.0, help="length of each load run")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "servers.json")
    args = p.parse_args(argv)
    if args.alt_path:
        sys.path.append(args.alt_path)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = resolve_model(REPO / "models", work)
        images = make_jpegs(default_image_source(), work / "img", 24)["224"]
        extra = {"UTILITY_MODELS_DIR": str(serve_dir(work, model.folder)), "UTILITY_ACCESS_LOG": "false"}
        env = service._env({"UTILITY_PROVIDERS": "CPUExecutionProvider", **extra})
        if args.alt_path:
            env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], args.alt_path])
        results = []
        for name, (module, cmd) in SERVERS.items():
            if module and importlib.util.find_spec(module) is None:
                continue
            results.append(one_server(name, cmd, env, images, args.seconds, work / f"{name}.log"))
    args.out.write_text(json.dumps({"model": model.as_dict(), "results": results}, indent=2) + "\n")
    sys.stdout.write(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
