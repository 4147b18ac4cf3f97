"""What the evaluation reads: a label manifest (its test split) and utility models run on its images."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from app.engine import UtilityModel
from app.preprocess import PreprocessSpec, decode_image, preprocess_bytes

log = logging.getLogger(__name__)

NEEDED = ("source", "image", "distortion", "level", "split")


@dataclass
class Manifest:
    """Test rows of a label manifest, with paths resolved and the labelers it names."""

    path: Path
    rows: pd.DataFrame  # test split only; columns 'path' and 'pristine' added
    labelers: list[str]
    meta: dict

    @property
    def root(self) -> Path:
        return self.path.parent


def manifest_file(path: Path) -> Path:
    """A manifest file, or the labelling OUT_DIR holding manifest.parquet / manifest.csv."""
    if path.is_dir():
        for name in ("manifest.parquet", "manifest.csv"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path} holds no manifest.parquet or manifest.csv")
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found")
    return path


def find_labelers(columns: list[str]) -> list[str]:
    """Labeler names from the per-labeler binary-utility columns ``<name>.u``."""
    return [c[: -len(".u")] for c in columns if c.endswith(".u")]


def load_manifest(
    path: Path, images_dir: Path | None = None, limit_sources: int = 0, seed: int = 0, split: str | None = "test"
) -> Manifest:
    """Rows of ``split`` (all rows with None, or if the manifest has no such split), ``limit_sources``
    sources at most."""
    file = manifest_file(path)
    df = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file, low_memory=False)
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise ValueError(f"{file}: missing columns {missing}")
    meta_file = file.with_suffix(".json")
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    if images_dir is None and meta.get("images_dir"):
        images_dir = Path(meta["images_dir"])
    rows = df[df["split"] == split] if split is not None and (df["split"] == split).any() else df
    if limit_sources:
        sources = sorted(rows["source"].unique())
        rng = np.random.default_rng(seed)
        keep = set(rng.choice(sources, size=min(limit_sources, len(sources)), replace=False))
        rows = rows[rows["source"].isin(keep)]
    rows = rows.copy().reset_index(drop=True)
    rows["path"] = [str(file.parent / p) for p in rows["image"]]
    rows["pristine"] = [str(images_dir / s) if images_dir else "" for s in rows["source"]]
    for col in [c for c in rows.columns if c == "label" or c.endswith((".u", ".u_paper"))]:
        rows[col] = pd.to_numeric(rows[col], errors="coerce")
    log.info("%s: %d %s rows from %d sources", file, len(rows), split or "(all)", rows["source"].nunique())
    return Manifest(file, rows, find_labelers(list(df.columns)), meta)


def load_model(folder: Path, device: str = "cpu") -> UtilityModel:
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    return UtilityModel(folder.name, folder, providers)


def as_png(data: bytes) -> bytes:
    """The same pixels, losslessly as PNG: what the model sees of a file whose header names no quality."""
    buf = io.BytesIO()
    decode_image(data, PreprocessSpec(jpeg_draft=False)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def predict_paths(
    model: UtilityModel, paths: list[str], batch_size: int = 32, desc: str = "", hide_quality: bool = False
) -> np.ndarray:
    """p_useful of each image file, preprocessed exactly as the model's contract says
    (``hide_quality``: sent as PNG of the same pixels, so no JPEG header reaches the model)."""
    read = (lambda p: as_png(Path(p).read_bytes())) if hide_quality else (lambda p: Path(p).read_bytes())
    out = np.empty(len(paths), dtype=np.float64)
    for start in tqdm(range(0, len(paths), batch_size), desc=desc or model.name, unit="batch", leave=False):
        chunk = paths[start : start + batch_size]
        batch = np.stack([preprocess_bytes(read(p), model.spec) for p in chunk])
        out[start : start + len(chunk)] = model.predict(batch)
    return out


def model_summary(model: UtilityModel) -> dict:
    """What the report says about a model: task, version, input size, training summary."""
    d = model.describe()
    return {k: d[k] for k in ("name", "task", "version", "input_size", "training", "file")}
