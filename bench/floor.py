"""The floor under any Python server here: bare ASGI apps under the same uvicorn, the same load.

    python -m bench.floor [--seconds 8] [--concurrency 16]

Three servers, one after the other, with the service runs' load generator and CPU accounting:
``http``: a bare ASGI app that reads the body and answers a fixed JSON (uvicorn, httptools, uvloop
and nothing else); ``http+decode``: the same plus our ``preprocess_bytes`` in a two-thread pool,
with the bundled model's preprocessing; ``service``: ``image-utility serve`` on the bundled model.
What ``service`` spends above ``http+decode`` is what our routes, batching and metrics cost; the
model's CPU per image over ``http+decode``'s plus the model's is the best service / model-only
ratio any Python server that decodes the same way can reach here. Writes ``floor.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.osthreads import name_os_thread
from app.preprocess import PreprocessSpec, preprocess_bytes
from app.settings import Settings
from bench import model_only, service
from bench.common import (
    REPO,
    default_image_source,
    dump,
    loadavg,
    machine_info,
    make_jpegs,
    model_spec,
    read_dir,
    real_batch,
    serve_dir,
)
from bench.common import resolve_model as _resolve

log = logging.getLogger("bench.floor")
_ANSWER = b'{"useful":true,"label":"useful","confidence":0.9,"p_useful":0.9,"threshold":0.5}'
_pool: ThreadPoolExecutor | None = None


@functools.cache
def _spec() -> PreprocessSpec:
    return PreprocessSpec.from_json(os.environ["BENCH_FLOOR_SPEC"])


async def app(scope, receive, send) -> None:
    """The bare ASGI app (``uvicorn bench.floor:app``); decodes when BENCH_FLOOR_SPEC is set."""
    global _pool
    if scope["type"] != "http":
        return
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    if body and os.environ.get("BENCH_FLOOR_SPEC"):
        _pool = _pool or ThreadPoolExecutor(2, thread_name_prefix="decode", initializer=name_os_thread)
        await asyncio.get_running_loop().run_in_executor(_pool, preprocess_bytes, body, _spec())
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": _ANSWER})


def _bare(spec_json: str | None, work: Path):
    cmd = [sys.executable, "-m", "uvicorn", "bench.floor:app", "--host", "127.0.0.1", "--port", "{port}"]
    cmd += ["--no-access-log", "--log-level", "warning"]
    env = service._env({"BENCH_FLOOR_SPEC": spec_json} if spec_json else {})
    return service.server(cmd, "/", env, work / "floor.log")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", type=Path, default=REPO / "models")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    out: dict = {"machine": machine_info(), "loadavg_start": loadavg(), "concurrency": args.concurrency, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        work = Path(tmp)
        model = _resolve(args.models_dir, work)
        spec = model_spec(model)
        images = make_jpegs(default_image_source(), work / "img", 48)["224"]
        sample = real_batch(read_dir(images), spec, 16)
        mo = model_only.measure_parallel(model.onnx, sample, (8,), 1.5, sessions=Settings().cpu_count)[0]
        out["model"], out["model_only_b8_parallel"] = model.as_dict(), mo
        servers = {
            "http": lambda: _bare(None, work),
            "http+decode": lambda: _bare(spec.to_json(), work),
            "service": lambda: service.our_service(serve_dir(work, model.folder), {}, work / "service.log"),
        }
        for name, start in servers.items():
            with start() as (base, pid):
                service.measure(base, pid, images, args.concurrency, 2.0, metrics=False)  # warm up
                r = service.measure(base, pid, images, args.concurrency, args.seconds, metrics=False)
            out["runs"][name] = r
            log.info("%s: %.0f req/s, server %.2f ms CPU/req", name, r["throughput_rps"], r["server_cpu_ms_per_image"])
    out["loadavg_end"] = loadavg()
    out["best_ratio"] = best_ratio(out)
    dump(args.out / "floor.json", out)
    (args.out / "floor.md").write_text(markdown(out))
    sys.stdout.write(markdown(out))
    return 0


def best_ratio(out: dict) -> dict:
    """CPU per image of the model alone over (model + the bare server with decode + its client)."""
    model_ms = out["model_only_b8_parallel"]["cpu_ms_per_image"]
    floor = out["runs"]["http+decode"]
    cost = model_ms + floor["server_cpu_ms_per_image"] + floor["client_cpu_ms_per_request"]
    ours = out["runs"]["service"]
    return {
        "model_cpu_ms_per_image": model_ms,
        "floor_ms_per_image": round(cost - model_ms, 2),
        "best_cpu_ratio": round(model_ms / cost, 3),
        "service_cpu_ratio": round(model_ms / (ours["server_cpu_ms_per_image"] + ours["client_cpu_ms_per_request"]), 3),
    }


def markdown(out: dict) -> str:
    b = out["best_ratio"]
    lines = [
        "# The floor under a Python server (bench.floor)",
        "",
        f"{out['machine']['cpu']}, {out['machine']['cpus_usable']} CPUs; load average {out['loadavg_start']} -> "
        f"{out['loadavg_end']}; concurrency {out['concurrency']}, 224-px JPEGs, raw body; model "
        f"`{out['model']['name']}` ({out['model']['precision']}, {out['model']['size']} px)",
        "",
        "| server | requests/s | server CPU ms/req | by thread ms/req | client CPU ms/req |",
        "|---|---:|---:|---|---:|",
    ]
    for name, r in out["runs"].items():
        split = ", ".join(f"{k} {v}" for k, v in r["server_cpu_ms_per_image_by_thread"].items() if v > 0)
        lines.append(
            f"| {name} | {r['throughput_rps']} | {r['server_cpu_ms_per_image']} | {split} | "
            f"{r['client_cpu_ms_per_request']} |"
        )
    lines += [
        "",
        f"Model alone (one single-threaded call per core, batch 8): {b['model_cpu_ms_per_image']} ms CPU per image. "
        f"Bare server + decode + client: {b['floor_ms_per_image']} ms per image, so the best CPU ratio service / "
        f"model-only any Python server decoding this way reaches here is **{b['best_cpu_ratio']}**; "
        f"ours: {b['service_cpu_ratio']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
