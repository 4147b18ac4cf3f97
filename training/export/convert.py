"""PyTorch -> ONNX: the file, its metadata, and the check that onnxruntime computes what PyTorch does."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

log = logging.getLogger("training.export")


class ParityError(RuntimeError):
    """onnxruntime and PyTorch disagree on the exported model by more than the tolerance."""


def to_onnx(model: torch.nn.Module, size: int, out: Path, opset: int, channels: int = 3) -> Path:
    """Legacy (TorchScript) exporter: no onnxscript needed; dynamic batch axis; only the logits."""
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, channels, size, size)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        torch.onnx.export(
            model.eval(),
            (dummy,),
            str(out),
            input_names=["input"],
            output_names=["logits"],
            opset_version=opset,
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    return out


def set_metadata(path: Path, metadata: dict[str, str]) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def verify_onnx(path: Path, model: torch.nn.Module, batch: np.ndarray, tolerance: float) -> float:
    """onnx.checker plus onnxruntime vs PyTorch on ``batch``; returns max abs diff, raises above tolerance."""
    onnx.checker.check_model(str(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: batch})[0]
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(batch)).numpy()
    diff = float(np.abs(got - want).max())
    log.info("onnxruntime vs PyTorch on %d images: max abs diff %.2e (tolerance %.0e)", len(batch), diff, tolerance)
    if not diff <= tolerance:
        raise ParityError(f"{path}: onnxruntime and PyTorch logits differ by {diff:.3e} > {tolerance:.0e}")
    return diff
