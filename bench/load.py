"""A bounded HTTP load generator for the service (loopback only).

    python -m bench.load URL --images DIR_OR_FILE... --concurrency 16 --seconds 20 [--json out.json]
        [--multipart FIELD]

The default client is a lean keep-alive HTTP/1.1 writer (``--client httpx`` for httpx); it
sends each image as the raw body (``content-type: image/jpeg``), or with ``--multipart FIELD`` as
a multipart/form-data part named FIELD (bodies built once, before the clock starts).

Keeps ``concurrency`` requests in flight for ``seconds``, then stops by itself. Reports
throughput, latency percentiles and status counts. Refuses targets outside 127.0.0.0/8 / ::1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


class RawConnection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for a POST.

    httpx costs several ms of CPU per request; on a 2-core machine the load generator then takes
    CPU from the server it measures. This client costs a small fraction of that.
    """

    def __init__(self, url: str) -> None:
        u = urlparse(url)
        self.host, self.port, self.path = u.hostname or "127.0.0.1", u.port or 80, u.path or "/"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def head(self, content_type: str, length: int) -> bytes:
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\nConnection: keep-alive\r\n\r\n"
        ).encode()

    async def post(self, head: bytes, body: bytes) -> tuple[int, dict[str, str]]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(head + body)
        lines = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self._reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


async def run_load(
    url: str,
    payloads: list[bytes],
    concurrency: int,
    seconds: float,
    content_type: str = "image/jpeg",
    multipart_field: str | None = None,
    client: str = "raw",
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

    async def worker(i: int, http: httpx.AsyncClient) -> None:
        nonlocal retry_after_missing
        n = i
        conn = RawConnection(url)
        heads = [conn.head(content_type, len(b)) for b in payloads]
        while time.perf_counter() < stop_at:
            k = n % len(payloads)
            n += concurrency
            t0 = time.perf_counter()
            try:
                if client == "raw":
                    status, headers = await asyncio.wait_for(conn.post(heads[k], payloads[k]), 60)
                else:
                    r = await http.post(url, content=payloads[k], headers={"content-type": content_type})
                    status, headers = r.status_code, r.headers
                if status == 429 and "retry-after" not in headers:
                    retry_after_missing += 1
            except (httpx.HTTPError, OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
                status = 0
                await conn.close()
            statuses[status] += 1
            if status == 200:
                latencies.append(time.perf_counter() - t0)
        await conn.close()

    start, cpu0 = time.perf_counter(), time.process_time()
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.gather(*(worker(i, http) for i in range(concurrency)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
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
        "client": client,
        "client_cpu_s": round(cpu, 3),
        "client_cpu_ms_per_request": round(1000 * cpu / max(sum(statuses.values()), 1), 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url")
    p.add_argument("--images", type=Path, nargs="+", required=True)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--json", type=Path)
    p.add_argument("--multipart", metavar="FIELD", help="send multipart/form-data with the image in part FIELD")
    p.add_argument("--client", choices=("raw", "httpx"), default="raw", help="raw: lean keep-alive HTTP/1.1 (default)")
    args = p.parse_args(argv)
    payloads = load_payloads(args.images)
    result = asyncio.run(
        run_load(args.url, payloads, args.concurrency, args.seconds, multipart_field=args.multipart, client=args.client)
    )
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
