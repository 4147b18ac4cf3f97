"""Static int8 quantisation (QDQ, per-channel) calibrated on training images, and a speed probe."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from app.preprocess import PreprocessSpec
from training.predict import read_batch

log = logging.getLogger(__name__)

CALIBRATION = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}


class ImageReader(CalibrationDataReader):
    """Feeds preprocessed image files (through the service's preprocessing) in small batches."""

    def __init__(self, paths: list[str], spec: PreprocessSpec, input_name: str = "input", batch_size: int = 8) -> None:
        self.paths, self.spec, self.input_name, self.batch_size = paths, spec, input_name, batch_size
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.paths), self.batch_size):
            chunk = self.paths[i : i + self.batch_size]
            yield {self.input_name: read_batch(chunk, self.spec)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def quantize(fp32: Path, out: Path, reader: CalibrationDataReader, method: str = "minmax") -> Path:
    """fp32 ONNX -> int8 QDQ ONNX with per-channel weights and uint8 activations."""
    out.parent.mkdir(parents=True, exist_ok=True)
    prepared = out.with_name(out.stem + ".prep.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(
            str(prepared),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CALIBRATION[method],
        )
    finally:
        prepared.unlink(missing_ok=True)
    log.info("int8 model %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out


def session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def images_per_second(paths: dict[str, Path], batch: np.ndarray, threads: int = 2, reps: int = 7) -> dict[str, float]:
    """Median images/s of each model on the same batch, runs interleaved so load hits all alike."""
    sessions = {k: session(p, threads) for k, p in paths.items()}
    times: dict[str, list[float]] = {k: [] for k in paths}
    for s in sessions.values():
        s.run(None, {s.get_inputs()[0].name: batch})
    for _ in range(reps):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {s.get_inputs()[0].name: batch})
            times[k].append(time.perf_counter() - t0)
    return {k: len(batch) / statistics.median(v) for k, v in times.items()}
