"""The mosec peer: the same ONNX model and preprocessing behind mosec (Rust HTTP and batching).

    python -m bench.peers.mosec_peer MODEL_FOLDER --port 8200 [--layout pipeline|one-stage]
        [--max-batch-size 16] [--max-wait-ms 4] [--decode-workers 2] [--infer-workers 2] [--threads 1]

POST /inference with the raw JPEG body -> {"useful": ..., "p_useful": ...}. mosec's idiom is a
pipeline of worker processes: ``pipeline`` decodes in a first stage (our ``preprocess_bytes``, no
batching) and runs the model in a second, batched stage (our ``UtilityModel.predict``, the same
onnxruntime session options); ``one-stage`` decodes inside the batched model worker, as the
LitServe peer does. mosec answers ``GET /`` when it is up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from mosec import Server, Worker

from app.engine import UtilityModel
from app.preprocess import preprocess_bytes

FOLDER_ENV, THREADS_ENV = "BENCH_MOSEC_MODEL", "BENCH_MOSEC_THREADS"


def _model() -> UtilityModel:
    folder = Path(os.environ[FOLDER_ENV])
    return UtilityModel(folder.name, folder, ["CPUExecutionProvider"], int(os.environ.get(THREADS_ENV, "1")))


class Decode(Worker):
    """Ingress: the raw body -> the model's input tensor (one image; mosec pickles it to the next stage)."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = _model().spec

    def deserialize(self, data: bytes) -> bytes:
        return data

    def forward(self, data: bytes) -> np.ndarray:
        return preprocess_bytes(data, self.spec)


class Infer(Worker):
    """The batched model call; egress writes the JSON answer."""

    def __init__(self) -> None:
        super().__init__()
        self.model = _model()
        self.model.warmup((1, 8))
        self.threshold = self.model.default_threshold

    def forward(self, data: list[np.ndarray]) -> list[dict[str, Any]]:
        p = self.model.predict(np.stack(data))
        return [{"useful": bool(v >= self.threshold), "p_useful": round(float(v), 6)} for v in p]

    def serialize(self, data: dict[str, Any]) -> bytes:
        return json.dumps(data).encode()


class DecodeAndInfer(Infer):
    """``one-stage``: ingress and model in one batched worker (decode runs serially inside the batch)."""

    def deserialize(self, data: bytes) -> bytes:
        return data

    def forward(self, data: list[bytes]) -> list[dict[str, Any]]:
        return super().forward([preprocess_bytes(d, self.model.spec) for d in data])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("--port", type=int, default=8200)
    p.add_argument("--layout", choices=("pipeline", "one-stage"), default="pipeline")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--max-wait-ms", type=int, default=4)
    p.add_argument("--decode-workers", type=int, default=2, help="processes of the decode stage (pipeline)")
    p.add_argument("--infer-workers", type=int, default=2, help="processes of the batched model stage")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads per model worker")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ[FOLDER_ENV], os.environ[THREADS_ENV] = str(args.folder.resolve()), str(args.threads)
    # mosec parses sys.argv itself: hand it only its own flags
    sys.argv = [sys.argv[0], "--address", "127.0.0.1", "--port", str(args.port), "--log-level", "warning"]
    sys.argv += ["--timeout", "30000"]
    server = Server()
    batch = {"max_batch_size": args.max_batch_size, "max_wait_time": args.max_wait_ms}
    if args.layout == "pipeline":
        server.append_worker(Decode, num=args.decode_workers)
        server.append_worker(Infer, num=args.infer_workers, **batch)
    else:
        server.append_worker(DecodeAndInfer, num=args.infer_workers, **batch)
    server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
