"""Idle connections: N silent sockets on a real service while normal traffic goes on (127.0.0.1 only).

    python -m bench.idle [--models-dir models] [--connections 1000] [--rate 10] [--json bench/results/idle.json]

Phases: normal requests alone (open loop at ``--rate`` per second, 224-px JPEGs) for ``--baseline-s``;
then ``--connections`` sockets that connect and send nothing, with the same traffic going on until
the last silent socket is closed by the server or ``idle_timeout + 5 s`` have passed. Reports when
each silent socket was closed (seconds after it connected), the normal requests' p50/p99 in both
phases, and the server's open fds before, at the peak and after. Bounded: at most 4096 sockets and
a minute of load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import dump
from bench.overload import Service, machine, open_loop, payloads, raise_fd_limit, stand_in

MAX_CONNECTIONS = 4096


async def silent(port: int, opened: list[float], closed: list[float | None], k: int, deadline: float) -> None:
    """Connect, send nothing, and note when the server closes (EOF or reset); None if it never does."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    opened[k] = time.perf_counter()
    try:
        await asyncio.wait_for(reader.read(1), max(0.1, deadline - time.perf_counter()))
        closed[k] = time.perf_counter() - opened[k]
    except TimeoutError:
        pass
    except OSError:
        closed[k] = time.perf_counter() - opened[k]
    finally:
        writer.close()


async def with_silent(
    svc: Service, bodies: list[bytes], n: int, rate: float, seconds: float, fds_peak: list[int]
) -> dict:
    opened: list[float] = [0.0] * n
    closed: list[float | None] = [None] * n
    deadline = time.perf_counter() + seconds
    socks = [asyncio.create_task(silent(svc.port, opened, closed, k, deadline)) for k in range(n)]

    async def sample_fds() -> None:
        while not all(s.done() for s in socks):
            fds_peak[0] = max(fds_peak[0], svc.fds())
            await asyncio.sleep(0.2)

    traffic = asyncio.create_task(open_loop(f"{svc.base}/utility", bodies, rate, seconds))
    await asyncio.gather(*socks, sample_fds())
    load = await traffic
    times = np.array([c for c in closed if c is not None])
    connected = sum(1 for t in opened if t)
    return {
        "connected": connected,
        "closed_by_server": int(times.size),
        "never_closed": connected - int(times.size),
        "closed_after_s": {
            "min": round(float(times.min()), 2) if times.size else None,
            "p50": round(float(np.median(times)), 2) if times.size else None,
            "max": round(float(times.max()), 2) if times.size else None,
        },
        "normal_traffic": load,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", type=Path, help="default: the ResNet-18 stand-in in a temporary folder")
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--rate", type=float, default=10.0, help="normal requests per second, both phases")
    p.add_argument("--baseline-s", type=float, default=10.0)
    p.add_argument("--idle-timeout-s", type=float, default=5.0, help="UTILITY_IDLE_TIMEOUT_S of the server")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if not 1 <= args.connections <= MAX_CONNECTIONS:
        p.error(f"--connections: 1..{MAX_CONNECTIONS}, got {args.connections}")
    raise_fd_limit()
    logs = Path(tempfile.mkdtemp(prefix="idle-"))
    env = {"UTILITY_IDLE_TIMEOUT_S": str(args.idle_timeout_s), "UTILITY_MAX_CONNECTIONS": str(args.connections + 64)}
    svc = Service(stand_in(args.models_dir), logs / "idle.log", **env)
    result: dict = {"machine_before": machine(), "connections": args.connections, "rate_rps": args.rate, **env}
    try:
        svc.wait_ready()
        bodies = payloads(8, (224, 224))
        asyncio.run(open_loop(f"{svc.base}/utility", bodies, args.rate, 3.0))  # warm up
        result["fds_before"] = svc.fds()
        result["baseline"] = asyncio.run(open_loop(f"{svc.base}/utility", bodies, args.rate, min(args.baseline_s, 30)))
        peak = [svc.fds()]
        seconds = min(args.idle_timeout_s + 5.0, 30.0)
        result["silent"] = asyncio.run(with_silent(svc, bodies, args.connections, args.rate, seconds, peak))
        result["fds_peak"], result["fds_after"] = peak[0], svc.fds()
        result["machine_after"] = machine()
    finally:
        result["server_exit"] = svc.stop()
    print(json.dumps(result, indent=1))
    if args.json:
        dump(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
