"""The label manifest and the pixels behind it.

A manifest is ``OUT_DIR/manifest.parquet`` or ``OUT_DIR/manifest.csv`` written by ``image-utility
label``: a row per distorted image with at least ``source, image, distortion, level, split, label``
(``image`` relative to OUT_DIR, ``label`` 1, 0 or empty for dropped). JSON files beside it
(labelling rule, thresholds) are carried into the model card as they are.

Pixels come from :func:`app.preprocess.decode_image` and :func:`app.preprocess.to_pixels`, the
functions the service runs, kept as a uint8 tensor cache and normalised in torch with the same
float32 operations as :func:`app.preprocess.to_tensor`: training sees the serving pixels bit for bit.
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

from app.preprocess import PreprocessSpec, decode_image, quality_table, to_pixels
from training.common import atomic_torch_save
from training.targets import aux_targets

log = logging.getLogger(__name__)

REQUIRED = ("source", "image", "distortion", "level", "split", "label")
MANIFEST_NAMES = ("manifest.parquet", "manifest.csv")
UNLABELLED = -1  # label of a dropped row kept for its dense targets


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


def read_manifest(path: Path, label_column: str = "label", keep_unlabelled: bool = False) -> pd.DataFrame:
    """Rows with a 0/1 label in ``label_column`` (copied into ``label``), with ``path`` resolved.
    ``keep_unlabelled`` keeps the dropped rows too, with label -1 (they still carry dense targets)."""
    file = find_manifest(path)
    df = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file)
    missing = [c for c in (*REQUIRED, label_column) if c not in df.columns]
    if missing:
        raise ManifestError(f"{file} lacks columns {missing}; has {list(df.columns)}")
    labels = pd.to_numeric(df[label_column], errors="coerce")
    keep = labels.notna() | keep_unlabelled
    kept = df.loc[keep].copy()
    kept["label"] = labels[keep].fillna(UNLABELLED).astype(int)
    bad = sorted(set(kept["label"].unique()) - {0, 1, UNLABELLED})
    if bad:
        raise ManifestError(f"{file}: column {label_column!r} has values {bad}, expected 1, 0 or empty")
    kept["split"] = kept["split"].astype(str).str.strip().str.lower()
    root = file.parent
    kept["path"] = [str(p if Path(p).is_absolute() else root / p) for p in kept["image"].astype(str)]
    log.info("%s: %d rows, %d labelled by %r", file, len(df), int((kept["label"] >= 0).sum()), label_column)
    return kept.reset_index(drop=True)


def read_manifests(paths: list[Path], label_column: str = "label", keep_unlabelled: bool = False) -> pd.DataFrame:
    """One manifest, or several joined: each keeps its own train/test split, and with more than one
    a ``collection`` column (the folder's name) prefixes each source so photos never collide.

    Folders of the same name are one collection (the same photos labelled apart, e.g. JPEG in one
    run and blur/noise in another): a photo must then sit in the same split in each.
    """
    if len(paths) == 1:
        return read_manifest(paths[0], label_column, keep_unlabelled)
    frames = []
    for path in paths:
        df = read_manifest(path, label_column, keep_unlabelled)
        name = find_manifest(path).parent.name
        df.insert(0, "collection", name)
        df["source"] = name + "/" + df["source"].astype(str)
        frames.append(df)
    joined = pd.concat(frames, ignore_index=True)
    splits = joined.loc[joined["split"] != "val"].groupby("source")["split"].nunique()
    if (splits > 1).any():
        raise ManifestError(
            f"{int((splits > 1).sum())} photos sit in different splits of folders with the same name "
            f"(first: {splits[splits > 1].index[0]}): label them with the same --seed and --test-fraction"
        )
    return joined


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
        split: {
            "total": int((g["label"] >= 0).sum()),
            "useful": int((g["label"] == 1).sum()),
            "non_useful": int((g["label"] == 0).sum()),
            "unlabelled": int((g["label"] == UNLABELLED).sum()),
        }
        for split, g in df.groupby("split")
    }
    levels = {str(d): _levels(g) for d, g in df.groupby("distortion")}
    extra = [c for c in df.columns if c not in (*REQUIRED, "path", "collection")]
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
        return [f"{level} ({pairs[level]})" for level in sorted(pairs.index, key=lambda v: _level_key(str(v)))]
    return sorted({str(v) for v in rows["level"]}, key=_level_key)


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
        results = pool.map(lambda p: _to_uint8(p, spec), paths)
        for i, arr in enumerate(tqdm(results, total=len(paths), desc="decode", mininterval=5)):
            out[i].numpy()[...] = arr  # one copy, straight from the (read-only) decoded pixels
    if file:
        atomic_torch_save(out, file)
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
    aux: torch.Tensor | None = None  # (N, K) float32 soft targets, see training.targets
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
