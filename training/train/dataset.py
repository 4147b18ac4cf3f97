"""What training reads of a manifest (:mod:`training.manifest`): its splits and the pixels behind them.

Pixels come from :func:`app.preprocess.decode_image` and :func:`app.preprocess.to_pixels`, the
functions the service runs, kept as a uint8 tensor cache and normalised in torch with the same
float32 operations as :func:`app.preprocess.to_tensor`: training sees the serving pixels bit for bit.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from app.preprocess import PreprocessSpec, decode_image, quality_table, to_pixels
from training.files import save_atomic
from training.manifest import NEEDED, UNLABELLED
from training.metrics import level_key
from training.train.targets import aux_targets

log = logging.getLogger(__name__)


def summarize(df: pd.DataFrame, label_column: str = "label") -> dict[str, Any]:
    """Counts a model card needs: per split and label, distortions and levels, labeler columns."""
    counts = {
        split: {
            "total": int((g["label"] >= 0).sum()),
            "useful": int((g["label"] == 1).sum()),
            "non_useful": int((g["label"] == 0).sum()),
            "unlabelled": int((g["label"] == UNLABELLED).sum()),
        }
        for split, g in df.groupby("split")
    }
    levels = {str(d): _levels(g) for d, g in df.groupby("distortion")}
    extra = [c for c in df.columns if c not in (*NEEDED, "label", "path", "collection")]
    return {
        "label_column": label_column,
        "splits": counts,
        "sources": {split: int(g["source"].nunique()) for split, g in df.groupby("split")},
        "distortions": levels,
        "other_columns": extra,
        **({"collections": sorted(df["collection"].unique().tolist())} if "collection" in df.columns else {}),
    }


def _levels(rows: pd.DataFrame) -> list[str]:
    """Sorted level names, with the distortion parameter when the manifest has one: '1 (50)'."""
    if "param" in rows.columns:
        pairs = rows.groupby("level")["param"].first()
        return [f"{level} ({pairs[level]})" for level in sorted(pairs.index, key=level_key)]
    return sorted({str(v) for v in rows["level"]}, key=level_key)


def split_validation(df: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Move ``fraction`` of the training *sources* (all their distorted copies) into a 'val' split."""
    sources = sorted(df.loc[df["split"] == "train", "source"].astype(str).unique())
    if fraction <= 0 or not sources:
        return df
    rng = np.random.default_rng(seed)
    n_val = max(1, round(len(sources) * fraction))
    val = set(rng.choice(sources, size=n_val, replace=False).tolist())
    return _into_val(df, df["source"].astype(str).isin(val))


def mark_validation(df: pd.DataFrame, args: dict[str, Any], data: dict[str, Any]) -> pd.DataFrame:
    """The run's own validation photos as a 'val' split: the named ones (``distill``), else ``split_validation``.

    Named photos match on their file name, so that ``read_manifests``' collection prefix ('imagen/...') and
    the label folder's name (``pixabay-imagenet-class`` for ``pixabay/imagenet-class``) do not matter.
    """
    names = data.get("val_sources")
    if not names:
        return split_validation(df, args.get("val_fraction", 0.1), args.get("seed", 0))
    return _into_val(df, df["source"].astype(str).str.rsplit("/", n=1).str[-1].isin(set(names)))


def _into_val(df: pd.DataFrame, chosen: pd.Series) -> pd.DataFrame:
    """The chosen training rows moved into 'val'; test rows stay test."""
    out = df.copy()
    out.loc[(out["split"] == "train") & chosen, "split"] = "val"
    return out


def pixels_of(path: str, spec: PreprocessSpec) -> np.ndarray:
    """One image file through the service's decode and preprocessing: (C, S, S) uint8."""
    return to_pixels(decode_image(Path(path).read_bytes(), spec), spec)


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
        # mapped, not read: the processes of one machine (torchrun) share one copy in the page cache
        return torch.load(file, weights_only=True, mmap=True)
    out = torch.empty((len(paths), spec.channels, spec.size, spec.size), dtype=torch.uint8)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda p: pixels_of(p, spec), paths)
        for i, arr in enumerate(tqdm(results, total=len(paths), desc="decode", mininterval=5)):
            out[i].numpy()[...] = arr  # one copy, straight from the (read-only) decoded pixels
    if file:
        save_atomic(file, partial(torch.save, out))
        log.info("cached %d images in %s", len(paths), file)
        return torch.load(file, weights_only=True, mmap=True)
    return out


def normalize(x: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """uint8 (N,C,S,S) -> float32 with the same operations as ``app.preprocess.to_tensor``
    (the quality plane through the same lookup table)."""
    views = spec.views
    mean = torch.tensor(spec.mean * views, dtype=torch.float32).view(1, -1, 1, 1)
    inv_std = 1.0 / torch.tensor(spec.std * views, dtype=torch.float32).view(1, -1, 1, 1)
    pixels = (x[:, : views * 3].to(torch.float32) * np.float32(1.0 / 255.0) - mean) * inv_std
    if not spec.quality_map:
        return pixels
    quality = torch.from_numpy(quality_table())[x[:, -1:].long()]
    return torch.cat([pixels, quality], 1)


@dataclass
class Split:
    """One split in memory: uint8 pixels, labels (0, 1, or -1 when dropped) and dense targets."""

    pixels: torch.Tensor
    labels: torch.Tensor
    frame: pd.DataFrame
    aux: torch.Tensor | None = None  # (N, K) float32 soft targets, see training.train.targets
    aux_mask: torch.Tensor | None = None  # (N, K) bool: where each target is defined

    def __len__(self) -> int:
        return len(self.labels)


def load_split(
    df: pd.DataFrame,
    split: str,
    spec: PreprocessSpec,
    cache_dir: Path | None,
    workers: int = 2,
    aux_names: list[str] | None = None,
) -> Split:
    part = df.loc[df["split"] == split].reset_index(drop=True)
    pixels = load_pixels(part["path"].tolist(), spec, cache_dir, workers)
    labels = torch.tensor(part["label"].to_numpy(), dtype=torch.long)
    if not aux_names:
        return Split(pixels, labels, part)
    values, mask = aux_targets(part, aux_names)
    return Split(pixels, labels, part, torch.from_numpy(values), torch.from_numpy(mask))
