"""Overload: offer 2x and 4x the measured capacity to a real service on 127.0.0.1, open loop.

    python -m bench.overload [--models-dir DIR] [--factors 2 4] [--seconds 20] [--json bench/results/overload.json]

Starts ``image-utility serve`` (``python -m app.cli serve``) as a subprocess with the ResNet-18
stand-in (``bench.make_model``, written to a temporary folder, never to models/), measures
capacity with the closed-loop generator of ``bench.load``, then sends requests at a fixed
arrival rate (open loop: arrivals do not wait for answers, which is what overload is) for a fixed
time and count. Records status counts, p50/p99 of admitted requests, RSS and open file
descriptors before and after, and whether full service is back right after the load stops.
Everything stops by itself; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.common import dump
from bench.load import check_loopback, run_load
from bench.service import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
MAX_IN_FLIGHT = 2000  # client-side bound: arrivals beyond it are counted as 'client_dropped', not sent


def payloads(n: int = 8, size: tuple[int, int] = (640, 480)) -> list[bytes]:
    """Camera-sized JPEGs made in code: smooth gradients plus noise, different per image."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        y, x = np.mgrid[0 : size[1], 0 : size[0]]
        base = np.stack([(x * (i + 1)) % 256, (y * 2 + 40 * i) % 256, (x + y) % 256], axis=-1).astype(np.int16)
        arr = np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


# ---- the service under test ----


class Service:
    """``image-utility serve`` on 127.0.0.1 in a subprocess, logs to a file, stopped with SIGTERM."""

    def __init__(self, models_dir: Path, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {"UTILITY_PROVIDERS": "CPUExecutionProvider", **env}
        self.log_path = log_path
        cmd = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [*cmd, "--models-dir", str(models_dir)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        try:
            wait_ready(f"{self.base}/readyz", self.proc, timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise SystemExit(f"{exc}; see {self.log_path}") from None

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return float("nan")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


# ---- open-loop load ----


def percentiles(latencies: list[float]) -> dict:
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {f"p{q}_ms": round(float(np.percentile(lat, q)) * 1000, 1) for q in (50, 90, 99)} | {
        "max_ms": round(float(lat.max()) * 1000, 1)
    }


async def open_loop(url: str, bodies: list[bytes], rate: float, seconds: float, timeout: float = 60.0) -> dict:
    """Send ``rate`` requests per second for ``seconds`` (at most rate*seconds requests), whatever the answers."""
    check_loopback(url)
    total = int(rate * seconds)
    statuses: Counter[str] = Counter()
    admitted: list[float] = []
    rejected: list[float] = []
    retry_after_missing = 0
    in_flight = 0
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=256)

    async def one(client: httpx.AsyncClient, body: bytes) -> None:
        nonlocal in_flight, retry_after_missing
        t0 = time.perf_counter()
        try:
            r = await client.post(url, content=body, headers={"content-type": "image/jpeg"})
            status = str(r.status_code)
            if r.status_code == 429 and not r.headers.get("retry-after"):
                retry_after_missing += 1
        except httpx.HTTPError as exc:
            status = f"client_error:{type(exc).__name__}"
        finally:
            in_flight -= 1
        statuses[status] += 1
        (admitted if status == "200" else rejected if status == "429" else []).append(time.perf_counter() - t0)

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        tasks = []
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= MAX_IN_FLIGHT:
                statuses["client_dropped"] += 1
                continue
            in_flight += 1
            tasks.append(asyncio.create_task(one(client, bodies[i % len(bodies)])))
        offered_s = time.perf_counter() - start
        await asyncio.wait_for(asyncio.gather(*tasks), timeout + 10)
    elapsed = time.perf_counter() - start
    return {
        "offered_rps": round(rate, 1),
        "achieved_arrival_rps": round(len(tasks) / offered_s, 1),
        "seconds": round(elapsed, 1),
        "requests": total,
        "statuses": dict(sorted(statuses.items())),
        "ok_rps": round(statuses.get("200", 0) / offered_s, 1),
        "admitted_latency": percentiles(admitted),
        "rejected_latency": percentiles(rejected),
        "retry_after_missing": retry_after_missing,
    }


async def probe(base: str, body: bytes, n: int = 10) -> dict:
    """n sequential requests: is full service back?"""
    codes, lat = [], []
    async with httpx.AsyncClient(timeout=30) as c:
        ready = (await c.get(f"{base}/readyz")).status_code
        for _ in range(n):
            t0 = time.perf_counter()
            r = await c.post(f"{base}/utility", content=body, headers={"content-type": "image/jpeg"})
            codes.append(r.status_code)
            lat.append(time.perf_counter() - t0)
    return {"readyz": ready, "statuses": dict(Counter(map(str, codes))), "p50_ms": percentiles(lat)["p50_ms"]}


def machine() -> dict:
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))


def stand_in(models_dir: Path | None) -> Path:
    if models_dir:
        return models_dir
    from bench.make_model import make_resnet18_folder

    out = Path(tempfile.gettempdir()) / "image-utility-bench" / "models"
    make_resnet18_folder(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", type=Path, help="default: the ResNet-18 stand-in in a temporary folder")
    p.add_argument("--capacity-seconds", type=float, default=15.0)
    p.add_argument("--capacity-concurrency", type=int, default=8)
    p.add_argument("--factors", type=float, nargs="+", default=[2.0, 4.0])
    p.add_argument("--seconds", type=float, default=20.0, help="duration of each overload phase")
    p.add_argument(
        "--queue-wait-s",
        type=float,
        default=2.0,
        help="sets UTILITY_QUEUE_SIZE = capacity x this (the admitted-latency budget); 0 keeps the default",
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    raise_fd_limit()
    models_dir = stand_in(args.models_dir)
    bodies = payloads()
    logs = Path(tempfile.mkdtemp(prefix="overload-"))
    result: dict = {"machine_before": machine(), "payload_bytes": [len(b) for b in bodies]}

    svc = Service(models_dir, logs / "capacity.log")
    try:
        svc.wait_ready()
        asyncio.run(run_load(f"{svc.base}/utility", bodies, 2, 3.0))  # warm up
        cap = asyncio.run(run_load(f"{svc.base}/utility", bodies, args.capacity_concurrency, args.capacity_seconds))
    finally:
        svc.stop()
    capacity = cap["throughput_rps"]
    result["capacity"] = cap
    print(f"capacity: {capacity} rps (closed loop, concurrency {args.capacity_concurrency})", flush=True)

    env = {}
    if args.queue_wait_s > 0:
        env["UTILITY_QUEUE_SIZE"] = str(max(16, round(capacity * args.queue_wait_s)))
    svc = Service(models_dir, logs / "overload.log", **env)
    try:
        svc.wait_ready()
        result["service_env"] = svc.env
        result["baseline"] = asyncio.run(probe(svc.base, bodies[0]))
        result["phases"] = []
        for factor in args.factors:
            rss0, fd0 = svc.rss_mb(), svc.fds()
            phase = asyncio.run(open_loop(f"{svc.base}/utility", bodies, factor * capacity, args.seconds))
            phase |= {"factor": factor, "rss_mb_before": rss0, "rss_mb_after": svc.rss_mb(), "fds_before": fd0}
            phase["fds_after"] = svc.fds()
            phase["right_after"] = asyncio.run(probe(svc.base, bodies[0]))
            phase["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
            result["phases"].append(phase)
            print(json.dumps(phase), flush=True)
    finally:
        result["exit_code"] = svc.stop()
    log_text = (logs / "overload.log").read_text()
    result["server_log_errors"] = sum('"level": "ERROR"' in line for line in log_text.splitlines())
    result["machine_after"] = machine()
    if args.json:
        dump(args.json, result)
    print(json.dumps(result, indent=2))
    bad = [p for p in result["phases"] if set(p["statuses"]) - {"200", "429"} or p["retry_after_missing"]]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
