"""The service under load: start it on 127.0.0.1, drive it from a second process, read its metrics.

The load generator (``bench.load``) runs as its own process, bounded in time. Before and after each
run the service's Prometheus histograms are scraped, so each run reports its own decode, queue and
inference time, the batch sizes seen, and the CPU seconds the server and the client used.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.common import REPO

HISTOGRAMS = {
    "decode": "utility_decode_duration_seconds",
    "queue": "utility_queue_wait_seconds",
    "inference": "utility_inference_duration_seconds",
    "batch": "utility_batch_size",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UTILITY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a live process and its live children (LitServe forks workers)."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready within {timeout:g} s")


@contextlib.contextmanager
def server(cmd: list[str], ready_path: str, env: dict[str, str], log_path: Path) -> Iterator[tuple[str, int]]:
    """Start a server in its own process group; yield (base URL, pid); stop the whole group at the end."""
    port = free_port()
    cmd = [part.replace("{port}", str(port)) for part in cmd]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + ready_path, proc)
        yield base, proc.pid
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's whole process group (LitServe forks workers), SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    time.sleep(0.5)  # let forked workers exit after their parent
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def our_service(models_dir: Path, settings: dict[str, str], log_path: Path):
    """Our service as ``image-utility serve`` runs it, with UTILITY_* settings."""
    env = _env({"UTILITY_PROVIDERS": "CPUExecutionProvider", **settings})
    cmd = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    return server([*cmd, "--models-dir", str(models_dir)], "/readyz", env, log_path)


def run_load(
    url: str, images: Path, concurrency: int, seconds: float, multipart: str | None = None, client: str = "raw"
) -> dict:
    """``bench.load`` in its own process; returns its result plus the client's CPU seconds."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", "bench.load", url, "--images", str(images)]
        cmd += ["--concurrency", str(concurrency), "--seconds", str(seconds), "--json", out.name, "--client", client]
        if multipart:
            cmd += ["--multipart", multipart]
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed: {proc.stderr.read().decode()[-2000:]}")
        proc.stderr.close()
        result = json.loads(Path(out.name).read_text())
    result["client_process_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)  # start-up and imports included
    return result


_ROLE = re.compile(r"_\d+$")


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of a live process's threads by role: the OS thread name without its ``_N``
    suffix (the service names its pools ``decode_N`` and ``infer_N``, ``app/osthreads.py``);
    the main thread, which runs the event loop, as ``loop``. Empty where /proc is missing."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):  # a thread may end between listdir and read
                comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
                fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                role = "loop" if tid == str(pid) else _ROLE.sub("", comm)
                out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


_SAMPLE = re.compile(r"^(\w+)(?:\{([^}]*)\})?\s+(\S+)$")


def scrape(base: str) -> dict[str, float]:
    """The histogram samples we use, keyed 'name{le}' (labels other than le dropped: one model)."""
    text = httpx.get(base + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or not m.group(1).startswith(tuple(HISTOGRAMS.values())):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        key = m.group(1) + (f"{{{labels['le']}}}" if "le" in labels else "")
        out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def split(before: dict[str, float], after: dict[str, float]) -> dict:
    """Per-run deltas: mean decode / queue / inference time, and the batch sizes seen."""
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    out: dict = {}
    for short, name in HISTOGRAMS.items():
        count, total = d.get(name + "_count", 0.0), d.get(name + "_sum", 0.0)
        out[f"{short}_count"] = int(count)
        out[f"{short}_total_s"] = round(total, 3)
        if short == "batch":
            out["batch_mean"] = round(total / count, 2) if count else None
        else:
            out[f"{short}_mean_ms"] = round(1000 * total / count, 3) if count else None
    buckets = sorted(
        ((float(k.split("{")[1][:-1]), v) for k, v in d.items() if k.startswith(HISTOGRAMS["batch"] + "_bucket")),
        key=lambda kv: kv[0],
    )
    hist, prev = {}, 0.0
    for le, cum in buckets:
        if cum - prev > 0:
            hist["inf" if le == float("inf") else str(int(le))] = int(cum - prev)
        prev = cum
    out["batch_histogram_le"] = hist  # calls per bucket (batch size <= key)
    return out


def measure(
    base: str,
    pid: int,
    images: Path,
    concurrency: int,
    seconds: float,
    multipart: str | None = None,
    path: str = "/utility",
    metrics: bool = True,
    client: str = "raw",
) -> dict:
    """One bounded load run against a live server: client figures, server-side split (ours), CPU."""
    before = scrape(base) if metrics else {}
    cpu0, threads0, t0 = proc_cpu_s(pid), thread_cpu_s(pid), time.perf_counter()
    result = run_load(base + path, images, concurrency, seconds, multipart, client)
    wall, cpu1, threads1 = time.perf_counter() - t0, proc_cpu_s(pid), thread_cpu_s(pid)
    if metrics:
        result.update(split(before, scrape(base)))
    ok = max(result["ok"], 1)
    result["server_cpu_s"] = round(cpu1 - cpu0, 2)
    result["server_cpu_ms_per_image"] = round(1000 * (cpu1 - cpu0) / ok, 2)
    result["server_cpu_ms_per_image_by_thread"] = {
        role: round(1000 * (cpu - threads0.get(role, 0.0)) / ok, 2) for role, cpu in sorted(threads1.items())
    }
    result["wall_s"] = round(wall, 2)
    return result
