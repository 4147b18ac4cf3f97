"""A hostile corpus and a soak against a real service on 127.0.0.1: public decoder test files.

    python -m bench.corpus DIR... [--models-dir models] [--passes 2] [--soak-s 600] [--json PATH]

Every file under DIR (decoder test suites, fuzzer crashers: e.g. Pillow's ``Tests/images``, which
holds PngSuite, the BMP suite and OSS-Fuzz cases) is sent as a raw body with the content type of
its extension (image/jpeg for extensions the service does not know, so every file reaches the
format sniffer) through ``passes`` passes, with ``/readyz`` probed every 25 files. Recorded per
class (file extension; ``fuzz`` for crashers, timeouts and OOM cases): status counts and the
slowest answer; overall: 5xx count, whether each file got the same answer in every pass, RSS
before and after, and log lines that are not JSON.

With ``--soak-s``, then alternates 30-s phases of clean traffic (photos only) and mixed traffic
(``--hostile-share`` of corpus files) at ``--load`` x the measured capacity, open loop: p99 of the
photos in each kind of phase, RSS sampled after every phase. Bounded: at most 20 minutes of soak;
loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

from bench.common import dump
from bench.load import check_loopback, run_load
from bench.overload import Service, payloads, percentiles, raise_fd_limit

MAX_SOAK_S = 1200.0
PHASE_S = 30.0
TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".gif": "image/gif",
}
FUZZ_MARKS = ("crash", "fuzz", "oom", "timeout", "leak")


def corpus(dirs: list[Path], max_bytes: int = 25 * 2**20) -> list[tuple[str, str, bytes]]:
    """(class, name, bytes) of every file below ``dirs``, sorted by name."""
    out = []
    for d in dirs:
        for f in sorted(p for p in d.rglob("*") if p.is_file() and p.stat().st_size <= max_bytes):
            name = f.name.lower()
            kind = "fuzz" if any(m in name for m in FUZZ_MARKS) else (f.suffix.lower().lstrip(".") or "none")
            out.append((kind, str(f.relative_to(d)), f.read_bytes()))
    return out


def content_type(name: str) -> str:
    return TYPES.get(Path(name).suffix.lower(), "image/jpeg")


async def one_pass(base: str, files: list[tuple[str, str, bytes]]) -> tuple[dict[str, tuple], dict]:
    """Each file once, in order; the answer of each and the per-class tally."""
    answers: dict[str, tuple] = {}
    classes: dict[str, Counter] = defaultdict(Counter)
    slowest: dict[str, float] = defaultdict(float)
    readyz_failures = 0
    async with httpx.AsyncClient(timeout=30.0) as client:
        for i, (kind, name, body) in enumerate(files):
            t0 = time.perf_counter()
            try:
                r = await client.post(f"{base}/utility", content=body, headers={"content-type": content_type(name)})
                status = r.status_code
                label = r.json().get("label") if status == 200 else r.json().get("detail", "")[:40]
            except (httpx.HTTPError, ValueError) as exc:
                status, label = f"client_error:{type(exc).__name__}", ""
            slowest[kind] = max(slowest[kind], time.perf_counter() - t0)
            classes[kind][str(status)] += 1
            answers[name] = (status, label)
            if i % 25 == 24 and (await client.get(f"{base}/readyz")).status_code != 200:
                readyz_failures += 1
    tally = {
        k: {"files": sum(c.values()), "statuses": dict(sorted(c.items())), "slowest_ms": round(slowest[k] * 1000)}
        for k, c in sorted(classes.items())
    }
    return answers, {"classes": tally, "readyz_failures": readyz_failures}


async def phase(
    url: str, photos: list[bytes], hostile: list[tuple[str, bytes]], share: float, rate: float, start_at: int = 0
) -> dict:
    """Open loop for PHASE_S seconds; every 1/share-th request a corpus file (from ``start_at`` on,
    so successive phases send different files). p99 of the photos."""
    check_loopback(url)
    every = round(1 / share) if share > 0 else 0
    photo_lat: list[float] = []
    statuses: Counter[str] = Counter()

    async def send(client: httpx.AsyncClient, i: int) -> None:
        is_hostile = every and i % every == every - 1
        ctype, body = hostile[(start_at + i) % len(hostile)] if is_hostile else ("image/jpeg", photos[i % len(photos)])
        t0 = time.perf_counter()
        try:
            r = await client.post(url, content=body, headers={"content-type": ctype})
            status = str(r.status_code)
        except httpx.HTTPError as exc:
            status = f"client_error:{type(exc).__name__}"
        statuses[("hostile " if is_hostile else "photo ") + status] += 1
        if not is_hostile and status == "200":
            photo_lat.append(time.perf_counter() - t0)

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=256)) as client:
        tasks = []
        for i in range(int(rate * PHASE_S)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(client, i)))
        _, late = await asyncio.wait(tasks, timeout=60)
        for task in late:  # an overloaded service: counted, not waited for forever
            task.cancel()
        statuses["client_gave_up_after_60s"] += len(late)
    return {"statuses": dict(sorted(statuses.items())), "photo_latency": percentiles(photo_lat)}


def soak(svc: Service, files: list[tuple[str, str, bytes]], args: argparse.Namespace) -> dict:
    url = f"{svc.base}/utility"
    photos = payloads()
    asyncio.run(run_load(url, photos, 2, 3.0))  # warm up
    capacity = asyncio.run(run_load(url, photos, 8, 10.0))["throughput_rps"]
    rate = max(1.0, capacity * args.load)
    hostile = [(content_type(name), body) for _, name, body in files]
    phases = []
    for k in range(int(min(args.soak_s, MAX_SOAK_S) // PHASE_S)):
        kind = "mixed" if k % 2 else "clean"
        share = args.hostile_share if kind == "mixed" else 0.0
        result = asyncio.run(phase(url, photos, hostile, share, rate, start_at=k * int(rate * PHASE_S)))
        phases.append({"phase": kind, "rss_mb": svc.rss_mb(), "fds": svc.fds(), **result})
        print(json.dumps(phases[-1]), flush=True)
    rss = [p["rss_mb"] for p in phases]
    p99 = {k: sorted(p["photo_latency"]["p99_ms"] for p in phases if p["phase"] == k) for k in ("clean", "mixed")}
    fivexx = sum(v for p in phases for s, v in p["statuses"].items() if s.split()[-1].startswith("5"))
    return {
        "capacity_rps": capacity,
        "rate_rps": round(rate, 1),
        "phases": phases,
        "5xx": fivexx,
        "rss_mb_first_phase": rss[0] if rss else None,
        "rss_mb_last_phase": rss[-1] if rss else None,
        "rss_drift_mb_after_first_third": round(rss[-1] - rss[len(rss) // 3], 1) if rss else None,
        "photo_p99_ms_median": {k: v[len(v) // 2] if v else None for k, v in p99.items()},
    }


def non_json_lines(log: Path) -> list[str]:
    bad = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            json.loads(line)
        except ValueError:
            bad.append(line[:200])
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", type=Path, nargs="+", help="folders of test files (searched recursively)")
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--passes", type=int, default=2, help="passes over the corpus (0: soak only)")
    p.add_argument("--soak-s", type=float, default=0.0, help="seconds of alternating clean / mixed load (0: none)")
    p.add_argument("--hostile-share", type=float, default=0.2)
    p.add_argument("--load", type=float, default=0.5, help="fraction of the measured capacity during the soak")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    raise_fd_limit()
    files = corpus(args.dirs)
    logs = Path(tempfile.mkdtemp(prefix="corpus-"))
    svc = Service(args.models_dir, logs / "service.log", UTILITY_ACCESS_LOG="false")
    result: dict = {"files": len(files), "dirs": [str(d) for d in args.dirs]}
    try:
        svc.wait_ready()
        result["rss_mb_before"] = svc.rss_mb()
        passes = [asyncio.run(one_pass(svc.base, files)) for _ in range(args.passes)]
        answers = [a for a, _ in passes]
        result["passes"] = [t for _, t in passes]
        result["same_answer_every_pass"] = (
            sum(all(a[n] == answers[0][n] for a in answers) for n in answers[0]) if answers else None
        )
        result["5xx"] = sum(1 for a in answers for s, _ in a.values() if str(s).startswith("5"))
        result["rss_mb_after_passes"] = svc.rss_mb()
        if args.soak_s:
            result["soak"] = soak(svc, files, args)
            result["5xx"] += result["soak"]["5xx"]
        result["alive_at_end"] = svc.proc.poll() is None
    finally:
        result["exit_code"] = svc.stop()
        result["non_json_log_lines"] = non_json_lines(logs / "service.log")[:20]
    if args.json:
        dump(args.json, result)
    brief = {k: v for k, v in result.items() if k != "soak"}
    brief["soak"] = {k: v for k, v in result.get("soak", {}).items() if k != "phases"}
    print(json.dumps(brief, indent=1))
    return 0 if result.get("5xx") == 0 and result.get("alive_at_end") else 1


if __name__ == "__main__":
    raise SystemExit(main())
