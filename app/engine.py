"""One ONNX utility model: session, contract, and batch prediction. Knows nothing of HTTP."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.contract import ContractError, ModelContract, latest_version_dir
from app.verdict import ModelInfo

log = logging.getLogger(__name__)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def make_session(path: Path, providers: list[str], intra_op_threads: int = 0) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads:
        opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    available = ort.get_available_providers()
    wanted = [p for p in providers if p in available] or ["CPUExecutionProvider"]
    # A failed GPU provider makes onnxruntime print several native error lines; we say it once below.
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=wanted)
    finally:
        ort.set_default_logger_severity(2)
    in_use = session.get_providers()
    # onnxruntime-gpu lists CUDA as available even without a GPU and silently falls back:
    # the providers the session really uses are the only truth.
    if providers[0] not in in_use:
        log.warning(
            "execution provider %s is not usable here; %s runs on %s",
            providers[0],
            path,
            in_use[0],
        )
    return session


class UtilityModel:
    """A loaded model folder. ``predict`` is thread-safe (onnxruntime sessions are)."""

    def __init__(self, name: str, folder: Path, providers: list[str], intra_op_threads: int = 0) -> None:
        self.name = name
        self.folder = folder
        version_dir = latest_version_dir(folder)
        self.path = version_dir / "model.onnx"
        self.session = make_session(self.path, providers, intra_op_threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.contract = ModelContract.from_metadata(meta)
        self.spec = self.contract.preprocess
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ContractError(f"{self.path}: expected one input and an output")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        self._check_input_shape(inputs[0].shape)

    def _check_input_shape(self, shape: list) -> None:
        size = self.spec.size
        channels = self.spec.channels
        if len(shape) != 4 or shape[1] != channels:
            raise ContractError(f"{self.path}: input must be NCHW with {channels} channels, got {shape}")
        for dim in shape[2:]:
            if isinstance(dim, int) and dim != size:
                raise ContractError(f"{self.path}: input is {shape} but metadata says size {size}")

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    @property
    def version(self) -> str:
        return self.contract.version

    @property
    def task(self) -> str:
        return self.contract.task

    @property
    def default_threshold(self) -> float:
        """The threshold of a request that names none (the model's ``utility.threshold``, else 0.5)."""
        return self.contract.threshold

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.name, self.version, self.task)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, S, S) float32 -> (N,) probability of 'useful'. Raises if outputs mismatch."""
        out = self.session.run([self.output_name], {self.input_name: batch})[0]
        out = np.asarray(out, dtype=np.float32).reshape(out.shape[0], -1)
        if out.shape != (batch.shape[0], len(self.contract.labels)):
            raise RuntimeError(f"model {self.name} returned shape {out.shape} for {batch.shape[0]} inputs")
        probs = _softmax(out) if self.contract.output == "logits" else out
        return probs[:, self.contract.useful_index]

    def warmup(self, batch_sizes: tuple[int, ...]) -> None:
        size = self.spec.size
        for n in batch_sizes:
            self.predict(np.zeros((n, self.spec.channels, size, size), dtype=np.float32))

    def describe(self) -> dict:
        spec = self.spec
        return {
            "name": self.name,
            "task": self.task,
            "version": self.version,
            "input_size": [spec.channels, spec.size, spec.size],
            "labels": list(self.contract.labels),
            "default_threshold": self.default_threshold,
            "output": self.contract.output,
            "preprocessing": {
                "resize": spec.resize,
                "size": spec.size,
                "interpolation": spec.interpolation,
                "mean": list(spec.mean),
                "std": list(spec.std),
                "jpeg_draft": spec.jpeg_draft,
                "native_crop": spec.native_crop,
                "quality_map": spec.quality_map,
            },
            "provider": self.provider,
            "providers": self.session.get_providers(),
            "file": str(self.path),
            "training": self.contract.training,
        }
