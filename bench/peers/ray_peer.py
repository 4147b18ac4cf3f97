"""The Ray Serve peer: the same ONNX model and preprocessing as a Serve deployment with ``@serve.batch``.

    python -m bench.peers.ray_peer MODEL_FOLDER --port 8300 [--replicas 2] [--max-batch-size 16]
        [--max-wait-ms 4] [--threads 1]

POST / with the raw JPEG body -> {"useful": ..., "p_useful": ...}; GET / answers once the
deployment is up. Each replica (a Ray actor process) decodes in its request handler (our
``preprocess_bytes``) and runs the batched model call (our ``UtilityModel.predict``); Ray's HTTP
proxy (uvicorn, in its own actor) forwards the requests. Ray is not a dependency: install it apart
(``pip install --target DIR "ray[serve]"``) and point ``BENCH_ALT_PATH`` at DIR.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from pathlib import Path

import numpy as np
from ray import serve
from starlette.requests import Request

from app.engine import UtilityModel
from app.preprocess import preprocess_bytes


@serve.deployment
class Utility:
    def __init__(self, folder: str, threads: int, max_batch_size: int, max_wait_ms: float) -> None:
        self.model = UtilityModel(Path(folder).name, Path(folder), ["CPUExecutionProvider"], threads)
        self.model.warmup((1, 8))
        self.predict.set_max_batch_size(max_batch_size)
        self.predict.set_batch_wait_timeout_s(max_wait_ms / 1000.0)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.004)
    async def predict(self, xs: list[np.ndarray]) -> list[dict]:
        p = self.model.predict(np.stack(xs))
        threshold = self.model.default_threshold
        return [{"useful": bool(v >= threshold), "p_useful": round(float(v), 6)} for v in p]

    async def __call__(self, request: Request) -> dict:
        if request.method != "POST":
            return {"ready": True}
        return await self.predict(preprocess_bytes(await request.body(), self.model.spec))


def main(argv: list[str] | None = None) -> int:
    import ray

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("--port", type=int, default=8300)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads per replica")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    app = Utility.options(num_replicas=args.replicas, ray_actor_options={"num_cpus": 0}).bind(
        str(args.folder.resolve()), args.threads, args.max_batch_size, args.max_wait_ms
    )
    serve.run(app, route_prefix="/", logging_config={"log_level": "WARNING", "enable_access_log": False})
    threading.Event().wait()  # serve until the bench stops the process group
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
