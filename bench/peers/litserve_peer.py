"""The LitServe peer: the same ONNX model and the same preprocessing served by LitServe, for a side by side.

    python -m bench.peers.litserve_peer MODEL_FOLDER --port 8100 [--max-batch-size 16]
        [--batch-timeout-ms 4] [--threads 1] [--workers 2]

POST /predict with a multipart part named ``file`` -> {"p_useful": ...}. LitServe runs
``decode_request`` (our ``preprocess_bytes``), ``batch``, ``predict`` (our ``UtilityModel.predict``,
the same onnxruntime session options) and ``unbatch`` in its inference worker process.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import litserve as ls
import numpy as np

from app.engine import UtilityModel
from app.preprocess import preprocess_bytes


class UtilityAPI(ls.LitAPI):
    """Module-level so LitServe can pickle it into its inference worker process."""

    def __init__(self, folder: Path, threads: int, max_batch_size: int, batch_timeout_s: float) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout_s)
        self.folder, self.threads = folder, threads

    def setup(self, device) -> None:
        self.model = UtilityModel(self.folder.name, self.folder, ["CPUExecutionProvider"], self.threads)
        self.model.warmup((1, self.max_batch_size))

    def decode_request(self, request):
        return preprocess_bytes(request["file"].file.read(), self.model.spec)

    def batch(self, inputs):
        return np.stack(inputs)

    def predict(self, x):
        return self.model.predict(x)

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        p = float(output)
        return {"useful": p >= self.model.default_threshold, "p_useful": round(p, 6)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--batch-timeout-ms", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (0 = one per core)")
    p.add_argument("--workers", type=int, default=1, help="LitServe inference worker processes (workers_per_device)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    api = UtilityAPI(args.folder, args.threads, args.max_batch_size, args.batch_timeout_ms / 1000.0)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=args.workers, timeout=30)
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, generate_client_file=False, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
