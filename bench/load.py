"""A bounded HTTP load generator for the service (loopback only).

    python -m bench.load URL --images DIR_OR_FILE... --concurrency 16 --seconds 20 [--json out.json]
        [--multipart FIELD]

Sends each image as the raw body (``content-type: image/jpeg``), or with ``--multipart FIELD`` as
a multipart/form-data part named FIELD (bodies built once, before the clock starts).

Keeps ``concurrency`` requests in flight for ``seconds``, then stops by itself. Reports
throughput, latency percentiles and status counts. Refuses targets outside 127.0.0.0/8 / ::1.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

log = logging.getLogger(__name__)


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to load {host}: load tests target loopback addresses only")


def load_payloads(paths: list[Path]) -> list[bytes]:
    files: list[Path] = []
    for p in paths:
        files += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    if not files:
        raise SystemExit("no images found")
    return [f.read_bytes() for f in files]


BOUNDARY = "bench-load-boundary-7d1f3c"


def multipart(data: bytes, field: str, filename: str = "image.jpg", content_type: str = "image/jpeg") -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


async def run_load(
    url: str,
    payloads: list[bytes],
    concurrency: int,
    seconds: float,
    content_type: str = "image/jpeg",
    multipart_field: str | None = None,
) -> dict:
    check_loopback(url)
    if multipart_field:
        payloads = [multipart(p, multipart_field, content_type=content_type) for p in payloads]
        content_type = f"multipart/form-data; boundary={BOUNDARY}"
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    retry_after_missing = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(i: int, client: httpx.AsyncClient) -> None:
        nonlocal retry_after_missing
        n = i
        while time.perf_counter() < stop_at:
            body = payloads[n % len(payloads)]
            n += concurrency
            t0 = time.perf_counter()
            try:
                r = await client.post(url, content=body, headers={"content-type": content_type})
                status = r.status_code
                if status == 429 and "retry-after" not in r.headers:
                    retry_after_missing += 1
            except httpx.HTTPError:
                status = 0
            statuses[status] += 1
            if status == 200:
                latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(i, client) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "requests": int(sum(statuses.values())),
        "ok": int(statuses.get(200, 0)),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "throughput_rps": round(statuses.get(200, 0) / elapsed, 2),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 2),
        "p90_ms": round(float(np.percentile(lat, 90)) * 1000, 2),
        "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 2),
        "retry_after_missing": retry_after_missing,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url")
    p.add_argument("--images", type=Path, nargs="+", required=True)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--json", type=Path)
    p.add_argument("--multipart", metavar="FIELD", help="send multipart/form-data with the image in part FIELD")
    args = p.parse_args(argv)
    payloads = load_payloads(args.images)
    result = asyncio.run(run_load(args.url, payloads, args.concurrency, args.seconds, multipart_field=args.multipart))
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
