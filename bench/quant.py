"""int8 variants for speed: find the bundled one, or quantise a model the way training does.

Training (``training/export/quantize.py``) makes static int8 QDQ models with per-channel int8 weights and
uint8 activations, calibrated on training images through ``preprocess_bytes``. The same function here,
calibrated on the bench photos, gives an int8 stand-in whose *speed* is representative; its accuracy
means nothing (random weights). The bundled models' accuracy lives in their model cards.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class _Reader:
    def __init__(self, batches: list[np.ndarray], input_name: str) -> None:
        self._batches, self._name, self._i = batches, input_name, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._batches):
            return None
        self._i += 1
        return {self._name: self._batches[self._i - 1]}

    def rewind(self) -> None:
        self._i = 0


def quantize_folder(fp32_folder: Path, out_models: Path, calib: np.ndarray) -> Path:
    """fp32 model folder -> ``out_models/<name>-int8`` (same metadata, config and card)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader

    from app.contract import latest_version_dir
    from training.export.quantize import quantize  # onnxruntime only, no torch

    src_version = latest_version_dir(fp32_folder)
    folder = out_models / f"{fp32_folder.name}-int8"
    out = folder / src_version.name / "model.onnx"
    if out.exists():
        return folder
    out.parent.mkdir(parents=True, exist_ok=True)
    for extra in ("config.pbtxt", "README.md"):
        if (fp32_folder / extra).exists():
            shutil.copy(fp32_folder / extra, folder / extra)
    src = src_version / "model.onnx"
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    CalibrationDataReader.register(_Reader)
    quantize(src, out, _Reader([calib[i : i + 8] for i in range(0, len(calib), 8)], input_name))
    # quantize_static keeps the graph but not always the metadata: copy the contract over.
    model, meta = onnx.load(str(out)), onnx.load(str(src), load_external_data=False).metadata_props
    onnx.helper.set_model_props(model, {p.key: p.value for p in meta})
    onnx.save(model, str(out))
    log.info("int8 variant %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return folder
