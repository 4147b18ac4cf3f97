"""Soak: a few minutes of steady load on a real service on 127.0.0.1; RSS and open fds sampled.

    python -m bench.soak [--models-dir DIR] [--seconds 180] [--load 0.6] [--json bench/results/soak.json]

Measures capacity (closed loop, ``bench.load``), then sends ``load`` x capacity requests per
second (open loop, ``bench.overload.open_loop``) in slices of ``--sample-s`` seconds, sampling the
server's RSS and file-descriptor count after each. Bounded: at most 5 minutes of load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from bench.common import dump
from bench.load import run_load
from bench.overload import Service, machine, open_loop, payloads, probe, raise_fd_limit, stand_in

MAX_SECONDS = 300.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", type=Path, help="default: the ResNet-18 stand-in in a temporary folder")
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--load", type=float, default=0.6, help="fraction of the measured capacity")
    p.add_argument("--sample-s", type=float, default=10.0)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    seconds = min(args.seconds, MAX_SECONDS)
    raise_fd_limit()
    models_dir = stand_in(args.models_dir)
    bodies = payloads()
    logs = Path(tempfile.mkdtemp(prefix="soak-"))
    result: dict = {"machine_before": machine()}
    svc = Service(models_dir, logs / "soak.log")
    try:
        svc.wait_ready()
        url = f"{svc.base}/utility"
        asyncio.run(run_load(url, bodies, 2, 3.0))  # warm up
        cap = asyncio.run(run_load(url, bodies, 8, 10.0))
        rate = max(1.0, cap["throughput_rps"] * args.load)
        result |= {"capacity_rps": cap["throughput_rps"], "rate_rps": round(rate, 1), "seconds": seconds}
        samples = [{"t_s": 0, "rss_mb": svc.rss_mb(), "fds": svc.fds(), "statuses": {}}]
        totals: dict[str, int] = {}
        latencies = []
        for i in range(int(seconds // args.sample_s)):
            part = asyncio.run(open_loop(url, bodies, rate, args.sample_s))
            for k, v in part["statuses"].items():
                totals[k] = totals.get(k, 0) + v
            latencies.append(part["admitted_latency"])
            sample = {"t_s": round((i + 1) * args.sample_s), "rss_mb": svc.rss_mb(), "fds": svc.fds()}
            samples.append(sample | {"statuses": part["statuses"], "p99_ms": part["admitted_latency"]["p99_ms"]})
            print(json.dumps(samples[-1]), flush=True)
        rss = [s["rss_mb"] for s in samples]
        steady = rss[len(rss) // 3 :]  # after the allocator has settled
        result |= {
            "requests": sum(totals.values()),
            "statuses": totals,
            "p50_ms_median_of_slices": sorted(x["p50_ms"] for x in latencies)[len(latencies) // 2],
            "p99_ms_worst_slice": max(x["p99_ms"] for x in latencies),
            "rss_mb_start": rss[0],
            "rss_mb_end": rss[-1],
            "rss_mb_growth_last_two_thirds": round(steady[-1] - steady[0], 1),
            "fds_start": samples[0]["fds"],
            "fds_max": max(s["fds"] for s in samples),
            "fds_end": samples[-1]["fds"],
            "right_after": asyncio.run(probe(svc.base, bodies[0])),
            "samples": samples,
        }
    finally:
        result["exit_code"] = svc.stop()
    result["machine_after"] = machine()
    if args.json:
        dump(args.json, result)
    print(json.dumps(result, indent=2))
    return 0 if set(result.get("statuses", {})) <= {"200"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
