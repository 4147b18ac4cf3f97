"""The servers users would pick instead of ours, serving the same ONNX model with the same preprocessing.

Each peer is a module under ``bench/peers`` run as its own server process; :data:`PEERS` says how
to start it, where it is ready, where to send images and in which body, and the small grid of
batching settings its sweep tries (the same kind of sweep that chose ours, ``bench.sweep``).
A peer whose framework is not importable is skipped, and the results say so. Heavy frameworks that
are not dependencies (Ray) can live in a folder of their own: ``pip install --target DIR "ray[serve]"``
and ``BENCH_ALT_PATH=DIR``; the peer's process then finds it there.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import service

log = logging.getLogger("bench.peers")


def alt_path() -> str | None:
    return os.environ.get("BENCH_ALT_PATH") or None


@dataclass(frozen=True)
class Peer:
    name: str
    framework: str  # the importable package the peer needs
    module: str
    ready_path: str
    request_path: str
    multipart: str | None  # the form field of the image; None: the raw JPEG body
    grid: Callable[[int], list[dict]]  # the sweep's settings, given the usable CPUs
    pausable: bool = True  # can be frozen with SIGSTOP while the others are measured

    def available(self) -> bool:
        if importlib.util.find_spec(self.framework) is not None:
            return True
        alt = alt_path()
        return alt is not None and (Path(alt) / self.framework / "__init__.py").is_file()

    def command(self, folder: Path, config: dict) -> list[str]:
        cmd = [sys.executable, "-m", self.module, str(folder), "--port", "{port}"]
        for key, value in config.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        return cmd

    def server(self, folder: Path, config: dict, log_path: Path):
        env = service._env()
        if alt := alt_path():  # after the project's own packages: the folder holds only what the venv lacks
            env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], alt])
        return service.server(self.command(folder, config), self.ready_path, env, log_path)

    def measure(self, base: str, pid: int, images: Path, concurrency: int, seconds: float) -> dict:
        return service.measure(
            base, pid, images, concurrency, seconds, self.multipart, path=self.request_path, metrics=False
        )


def _litserve_grid(cpus: int) -> list[dict]:
    layouts = ({"workers": cpus, "threads": 1}, {"workers": 1, "threads": 0})  # ours; LitServe's default
    return [{**lay, "max_batch_size": b, "batch_timeout_ms": 4} for lay in layouts for b in (8, 16)]


def _mosec_grid(cpus: int) -> list[dict]:
    pipeline = {"layout": "pipeline", "decode_workers": cpus, "infer_workers": cpus, "threads": 1}
    one_stage = {"layout": "one-stage", "infer_workers": cpus, "threads": 1}
    return [{**lay, "max_batch_size": b, "max_wait_ms": 4} for lay in (pipeline, one_stage) for b in (8, 16)]


def _ray_grid(cpus: int) -> list[dict]:  # Ray starts in ~30-60 s here: two settings only
    return [{"replicas": cpus, "threads": 1, "max_batch_size": b, "max_wait_ms": 4} for b in (8, 16)]


PEERS = {
    "litserve": Peer(
        "litserve", "litserve", "bench.peers.litserve_peer", "/health", "/predict", "file", _litserve_grid
    ),
    "mosec": Peer("mosec", "mosec", "bench.peers.mosec_peer", "/", "/inference", None, _mosec_grid),
    "ray-serve": Peer("ray-serve", "ray", "bench.peers.ray_peer", "/", "/", None, _ray_grid, pausable=False),
}


def sweep(peer: Peer, folder: Path, images: Path, cpus: int, seconds: float, work: Path) -> dict:
    """Each grid setting at concurrency 64 after a short warm-up; the fastest error-free one is chosen."""
    tried = []
    for config in peer.grid(cpus):
        with peer.server(folder, config, work / f"{peer.name}-sweep.log") as (base, pid):
            peer.measure(base, pid, images, 64, 1.0)
            r = peer.measure(base, pid, images, 64, seconds)
        tried.append({"config": config, **{k: r[k] for k in ("throughput_rps", "p50_ms", "p99_ms", "ok", "requests")}})
        log.info("%s sweep %s: %.1f img/s p99 %.0f ms", peer.name, config, r["throughput_rps"], r["p99_ms"])
    clean = [t for t in tried if t["ok"] == t["requests"]] or tried
    return {"tried": tried, "chosen": max(clean, key=lambda t: t["throughput_rps"])["config"]}
