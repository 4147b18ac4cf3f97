"""The label manifest and the pixels behind it.

A manifest is ``OUT_DIR/manifest.parquet`` or ``OUT_DIR/manifest.csv`` written by ``image-utility
label``: a row per distorted image with at least ``source, image, distortion, level, split, label``
(``image`` relative to OUT_DIR, ``label`` 1, 0 or empty for dropped). JSON files beside it
(labelling rule, thresholds) are carried into the model card as they are.

Pixels come from :func:`app.preprocess.preprocess_bytes`, the function the service runs, and are
kept as a uint8 tensor cache: normalisation is undone exactly (the resized image is uint8) and
redone in torch with the same float32 operations, so training sees the serving pixels bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from app.preprocess import PreprocessSpec, preprocess_bytes
from training.common import atomic_torch_save

log = logging.getLogger(__name__)

REQUIRED = ("source", "image", "distortion", "level", "split", "label")
MANIFEST_NAMES = ("manifest.parquet", "manifest.csv")


class ManifestError(ValueError):
    """The manifest is missing, unreadable or lacks required columns."""


def find_manifest(path: Path) -> Path:
    """A manifest file, or the manifest inside an OUT_DIR (parquet preferred)."""
    if path.is_file():
        return path
    for name in MANIFEST_NAMES:
        if (path / name).is_file():
            return path / name
    raise ManifestError(f"no {' or '.join(MANIFEST_NAMES)} in {path}")


def read_manifest(path: Path, label_column: str = "label") -> pd.DataFrame:
    """Rows with a 0/1 label in ``label_column`` (copied into ``label``), with ``path`` resolved."""
    file = find_manifest(path)
    df = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file)
    missing = [c for c in (*REQUIRED, label_column) if c not in df.columns]
    if missing:
        raise ManifestError(f"{file} lacks columns {missing}; has {list(df.columns)}")
    labels = pd.to_numeric(df[label_column], errors="coerce")
    kept = df.loc[labels.notna()].copy()
    kept["label"] = labels[labels.notna()].astype(int)
    bad = sorted(set(kept["label"].unique()) - {0, 1})
    if bad:
        raise ManifestError(f"{file}: column {label_column!r} has values {bad}, expected 1, 0 or empty")
    kept["split"] = kept["split"].astype(str).str.strip().str.lower()
    root = file.parent
    kept["path"] = [str(p if Path(p).is_absolute() else root / p) for p in kept["image"].astype(str)]
    log.info("%s: %d rows, %d labelled by %r", file, len(df), len(kept), label_column)
    return kept.reset_index(drop=True)


def side_files(path: Path, max_bytes: int = 1_000_000) -> dict[str, Any]:
    """Every small JSON file beside the manifest (labelling rule, thresholds, labelers), parsed."""
    root = find_manifest(path).parent
    found: dict[str, Any] = {}
    for file in sorted(root.glob("*.json")):
        if file.stat().st_size > max_bytes:
            continue
        try:
            found[file.name] = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", file, exc)
    return found


def summarize(df: pd.DataFrame, label_column: str = "label") -> dict[str, Any]:
    """Counts a model card needs: per split and label, distortions and levels, labeler columns."""
    counts = {
        split: {"total": len(g), "useful": int((g["label"] == 1).sum()), "non_useful": int((g["label"] == 0).sum())}
        for split, g in df.groupby("split")
    }
    levels = {str(d): sorted({str(v) for v in g["level"]}, key=_level_key) for d, g in df.groupby("distortion")}
    extra = [c for c in df.columns if c not in (*REQUIRED, "path")]
    return {
        "label_column": label_column,
        "splits": counts,
        "sources": {split: int(g["source"].nunique()) for split, g in df.groupby("split")},
        "distortions": levels,
        "other_columns": extra,
    }


def _level_key(text: str) -> tuple[int, float | str]:
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)


def find_labelers(side: dict[str, Any], columns: list[str]) -> Any:
    """The labelers named in a JSON file beside the manifest, else the prefixes of 'name.field' columns."""
    for content in side.values():
        if isinstance(content, dict):
            for key in ("labelers", "labeler", "networks", "models"):
                if content.get(key):
                    return content[key]
    return sorted({c.split(".")[0] for c in columns if "." in c})


def split_validation(df: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Move ``fraction`` of the training *sources* (all their distorted copies) into a 'val' split."""
    if fraction <= 0:
        return df
    sources = sorted(df.loc[df["split"] == "train", "source"].astype(str).unique())
    rng = np.random.default_rng(seed)
    n_val = max(1, round(len(sources) * fraction))
    val = set(rng.choice(sources, size=n_val, replace=False).tolist())
    out = df.copy()
    out.loc[(out["split"] == "train") & out["source"].astype(str).isin(val), "split"] = "val"
    return out


def _to_uint8(path: str, spec: PreprocessSpec) -> np.ndarray:
    x = preprocess_bytes(Path(path).read_bytes(), spec)
    std = np.asarray(spec.std, dtype=np.float32)[:, None, None]
    mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    return np.clip(np.rint((x * std + mean) * 255.0), 0, 255).astype(np.uint8)


def _cache_key(paths: list[str], spec: PreprocessSpec) -> str:
    h = hashlib.sha1(spec.to_json().encode())
    for p in paths:
        st = Path(p).stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def load_pixels(paths: list[str], spec: PreprocessSpec, cache_dir: Path | None, workers: int = 2) -> torch.Tensor:
    """(N, 3, S, S) uint8 through the service's preprocessing, decoded once and cached on disk."""
    file = cache_dir / f"pixels-{_cache_key(paths, spec)}.pt" if cache_dir else None
    if file and file.is_file():
        log.info("pixels from cache %s", file)
        return torch.load(file, weights_only=True)
    out = torch.empty((len(paths), 3, spec.size, spec.size), dtype=torch.uint8)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda p: _to_uint8(p, spec), paths)
        for i, arr in enumerate(tqdm(results, total=len(paths), desc="decode", mininterval=5)):
            out[i] = torch.from_numpy(arr)
    if file:
        atomic_torch_save(out, file)
        log.info("cached %d images in %s", len(paths), file)
    return out


def normalize(x: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """uint8 (N,3,S,S) -> float32 with the same operations as ``app.preprocess.to_tensor``."""
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    inv_std = 1.0 / torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x.to(torch.float32) * np.float32(1.0 / 255.0) - mean) * inv_std


@dataclass
class Split:
    """One split in memory: uint8 pixels and 0/1 labels."""

    pixels: torch.Tensor
    labels: torch.Tensor
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.labels)


def load_split(df: pd.DataFrame, split: str, spec: PreprocessSpec, cache_dir: Path | None, workers: int = 2) -> Split:
    part = df.loc[df["split"] == split].reset_index(drop=True)
    pixels = load_pixels(part["path"].tolist(), spec, cache_dir, workers)
    return Split(pixels, torch.tensor(part["label"].to_numpy(), dtype=torch.long), part)
