"""Run a model folder on image files through the service's own engine (:class:`app.engine.UtilityModel`).

Export measures its ONNX files with it, the evaluation and the scorecard score manifests with it,
and the benchmarks build their input batches with it: each file goes through
:func:`app.preprocess.preprocess_bytes` exactly as a request would. No torch, no pandas.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from app.engine import UtilityModel
from app.preprocess import PreprocessSpec, preprocess_bytes
from training.images import as_png
from training.metrics import binary_metrics, per_level

if TYPE_CHECKING:
    import pandas as pd


def load_model(folder: Path, device: str = "cpu", threads: int = 0) -> UtilityModel:
    """The model folder's latest version on onnxruntime (``device`` 'cuda': CUDA first, CPU as fallback)."""
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    return UtilityModel(folder.name, folder, providers, intra_op_threads=threads)


def preprocess_all(payloads: Iterable[bytes], spec: PreprocessSpec) -> np.ndarray:
    """Encoded images -> one float32 batch (N, C, S, S) as the model's contract prepares them."""
    return np.stack([preprocess_bytes(data, spec) for data in payloads]).astype(np.float32, copy=False)


def read_batch(paths: Iterable[str | Path], spec: PreprocessSpec, hide_quality: bool = False) -> np.ndarray:
    """Image files -> one input batch (``hide_quality``: each sent as PNG of the same pixels)."""
    return preprocess_all((_read(p, hide_quality) for p in paths), spec)


def _read(path: str | Path, hide_quality: bool) -> bytes:
    data = Path(path).read_bytes()
    return as_png(data) if hide_quality else data


def predict_paths(
    model: UtilityModel, paths: list[str], batch_size: int = 32, desc: str = "", hide_quality: bool = False
) -> np.ndarray:
    """p_useful of each image file, preprocessed exactly as the model's contract says
    (``hide_quality``: sent as PNG of the same pixels, so no JPEG header reaches the model)."""
    out = np.empty(len(paths), dtype=np.float64)
    for start in tqdm(range(0, len(paths), batch_size), desc=desc or model.name, unit="batch", leave=False):
        chunk = paths[start : start + batch_size]
        out[start : start + len(chunk)] = model.predict(read_batch(chunk, model.spec, hide_quality))
    return out


def evaluate_folder(folder: Path, frame: pd.DataFrame, threshold: float = 0.5, threads: int = 0) -> dict[str, Any]:
    """Metrics of a model folder on manifest rows (``path``, ``label``, ``distortion``, ``level``),
    overall and per distortion level."""
    scores = predict_paths(load_model(folder, threads=threads), frame["path"].tolist(), desc=f"eval {folder.name}")
    metrics = binary_metrics(frame["label"].to_numpy(), scores, threshold)
    return {**metrics, "per_level": per_level(frame, scores, threshold)}
