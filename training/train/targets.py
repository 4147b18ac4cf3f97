"""Dense auxiliary targets: what every manifest row can teach, labelled or dropped.

The combined label exists only where the labellers agree; the facts behind it exist on every row.
Two kinds of soft target in [0, 1], each with a mask where it is undefined:

- ``severity``: how strong the compression is, log(100 / quality) / log(100 / 2) (pristine 0,
  quality 2 -> 1), for the JPEG family of rows (``jpeg``, ``jpeg-hq``, ``pristine``, and
  ``jpeg-reencode``, whose severity is its first pass's: the damage, not what the header says);
- ``<labeller>.retained``: the share of its pristine confidence a labeller keeps on the distorted
  image, clip(phi / phi', 0, 1), where the source counts for it. The relative labelling rule
  (docs/labels.md) thresholds exactly this, so it is the within-level signal the label depends on.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SEVERITY = "severity"
# name -> has a quality parameter
JPEG_FAMILY = {"jpeg": True, "jpeg-hq": True, "jpeg-reencode": True, "pristine": False}
BEST_QUALITY, WORST_QUALITY = 100.0, 2.0


def labellers_of(frame: pd.DataFrame) -> list[str]:
    """Labellers with per-image facts in the manifest (columns ``L.phi`` and ``L.phi_ref``)."""
    return sorted(c[: -len(".phi")] for c in frame.columns if c.endswith(".phi") and f"{c}_ref" in frame.columns)


def target_names(frame: pd.DataFrame) -> list[str]:
    return [SEVERITY, *(f"{name}.retained" for name in labellers_of(frame))]


def severity(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    dist = frame["distortion"].astype(str)
    param = frame["param"] if "param" in frame.columns else pd.Series(np.nan, index=frame.index)
    quality = pd.to_numeric(param, errors="coerce").to_numpy(dtype=np.float64)
    quality = np.where(dist == "pristine", BEST_QUALITY, quality)
    mask = dist.isin(list(JPEG_FAMILY)).to_numpy() & np.isfinite(quality) & (quality > 0)
    value = np.log(BEST_QUALITY / np.where(mask, quality, BEST_QUALITY)) / math.log(BEST_QUALITY / WORST_QUALITY)
    return np.clip(value, 0.0, 1.0), mask


def retained(frame: pd.DataFrame, labeller: str) -> tuple[np.ndarray, np.ndarray]:
    phi = pd.to_numeric(frame[f"{labeller}.phi"], errors="coerce").to_numpy(dtype=np.float64)
    ref = pd.to_numeric(frame[f"{labeller}.phi_ref"], errors="coerce").to_numpy(dtype=np.float64)
    valid = frame.get(f"{labeller}.valid", pd.Series(True, index=frame.index))
    valid = valid.astype(str).str.lower().isin(["true", "1", "1.0"]).to_numpy()
    mask = valid & np.isfinite(phi) & np.isfinite(ref) & (ref > 0)
    return np.clip(np.where(mask, phi, 0.0) / np.where(mask, ref, 1.0), 0.0, 1.0), mask


def aux_targets(frame: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(values, mask), both (rows, len(names)); values are 0 where the mask is False."""
    values = np.zeros((len(frame), len(names)), dtype=np.float32)
    mask = np.zeros((len(frame), len(names)), dtype=bool)
    for k, name in enumerate(names):
        v, m = severity(frame) if name == SEVERITY else retained(frame, name.removesuffix(".retained"))
        values[:, k], mask[:, k] = np.where(m, v, 0.0), m
    return values, mask


def defined_targets(frame: pd.DataFrame) -> list[str]:
    """The targets of :func:`target_names` defined on at least one row of ``frame``."""
    names = target_names(frame)
    _, mask = aux_targets(frame, names)
    return [name for name, any_row in zip(names, mask.any(axis=0), strict=True) if any_row]
