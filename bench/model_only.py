"""The ceiling: onnxruntime alone on preprocessed inputs, per batch size (no HTTP, no decode).

    python -m bench.model_only MODEL.onnx [--batch-sizes 1 8 16] [--seconds 2] [--threads 0]

The session is built by ``app.engine.make_session``, exactly as the service builds it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def time_batch(session, input_name: str, x: np.ndarray, seconds: float, min_runs: int = 2) -> dict:
    """Run one batch size back to back for ``seconds`` (at least ``min_runs`` calls)."""
    session.run(None, {input_name: x})  # warm-up: first call at a new shape allocates
    calls: list[float] = []
    cpu0 = time.process_time()  # all threads of this process: onnxruntime's pool included
    start = time.perf_counter()
    while len(calls) < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        session.run(None, {input_name: x})
        calls.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    lat = np.array(calls)
    n = x.shape[0]
    return {
        "batch_size": n,
        "calls": len(calls),
        "images_per_s": round(n * len(calls) / total, 2),
        "batch_p50_ms": round(float(np.percentile(lat, 50)) * 1000, 2),
        "batch_p99_ms": round(float(np.percentile(lat, 99)) * 1000, 2),
        "per_image_ms": round(float(np.median(lat)) * 1000 / n, 3),
        "cpu_ms_per_image": round(1000 * cpu / (n * len(calls)), 2),
    }


def measure(
    path: Path, sample: np.ndarray, batch_sizes=BATCH_SIZES, seconds: float = 2.0, threads: int = 0
) -> list[dict]:
    """Throughput and latency per batch size; ``sample`` holds real preprocessed images."""
    from app.engine import make_session

    session = make_session(path, ["CPUExecutionProvider"], threads)
    name = session.get_inputs()[0].name
    rows = []
    for n in batch_sizes:
        x = np.ascontiguousarray(np.resize(sample, (n, *sample.shape[1:])).astype(np.float32))
        rows.append(time_batch(session, name, x, seconds))
    return rows


def measure_parallel(
    path: Path, sample: np.ndarray, batch_sizes=BATCH_SIZES, seconds: float = 2.0, sessions: int = 2
) -> list[dict]:
    """``sessions`` single-threaded calls at once on one session (``intra_op_threads=1``,
    ``instances=sessions`` in the service): no intra-op barriers between the cores."""
    from concurrent.futures import ThreadPoolExecutor

    from app.engine import make_session

    session = make_session(path, ["CPUExecutionProvider"], 1)
    name = session.get_inputs()[0].name
    rows = []
    with ThreadPoolExecutor(sessions) as pool:
        for n in batch_sizes:
            x = np.ascontiguousarray(np.resize(sample, (n, *sample.shape[1:])).astype(np.float32))
            session.run(None, {name: x})
            cpu0, start = time.process_time(), time.perf_counter()
            parts = list(pool.map(lambda _, x=x: _loop(session, name, x, seconds), range(sessions)))
            total, cpu = time.perf_counter() - start, time.process_time() - cpu0
            lat = np.concatenate(parts)
            rows.append(
                {
                    "batch_size": n,
                    "sessions": sessions,
                    "calls": len(lat),
                    "images_per_s": round(n * len(lat) / total, 2),
                    "batch_p50_ms": round(float(np.percentile(lat, 50)) * 1000, 2),
                    "batch_p99_ms": round(float(np.percentile(lat, 99)) * 1000, 2),
                    "cpu_ms_per_image": round(1000 * cpu / (n * len(lat)), 2),
                }
            )
    return rows


def _loop(session, name: str, x: np.ndarray, seconds: float) -> np.ndarray:
    calls: list[float] = []
    start = time.perf_counter()
    while not calls or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        session.run(None, {name: x})
        calls.append(time.perf_counter() - t0)
    return np.array(calls)


def best(one_call: list[dict], parallel: list[dict]) -> list[dict]:
    """The ceiling per batch size: the faster of one all-core call and parallel single-thread calls."""
    by_size = {r["batch_size"]: r for r in parallel}
    out = []
    for r in one_call:
        p = by_size.get(r["batch_size"])
        pick = p if p and p["images_per_s"] > r["images_per_s"] else r
        out.append({**pick, "layout": "parallel 1-thread calls" if pick is p else "one all-core call"})
    return out


def interpolate(rows: list[dict], batch: float) -> float:
    """Model-only images/s at a (possibly fractional) mean batch size, linear between measured sizes."""
    xs = [r["batch_size"] for r in rows]
    ys = [r["images_per_s"] for r in rows]
    return float(np.interp(batch, xs, ys))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args(argv)
    sample = np.random.default_rng(0).standard_normal((8, 3, args.size, args.size), dtype=np.float32)
    rows = measure(args.model, sample, args.batch_sizes, args.seconds, args.threads)
    sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
