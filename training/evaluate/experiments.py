"""The paper's experiments on a manifest's test rows, each a function returning plain JSON-able dicts
(an undefined number is NaN, as in :mod:`training.metrics`)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd
from tqdm import tqdm

from training.evaluate import baselines
from training.images import load_rgb
from training.metrics import NAN, auroc, binary_metrics, spearman

log = logging.getLogger(__name__)
TRAIN_DISTORTION = "jpeg"


def _labelled(rows: pd.DataFrame, column: str) -> np.ndarray:
    return (rows[column].notna()).to_numpy() if column in rows.columns else np.zeros(len(rows), dtype=bool)


def predictor_accuracy(rows: pd.DataFrame, label_column: str, p_useful: np.ndarray, threshold: float = 0.5) -> dict:
    """Table I/II: a predictor against the labels it was trained for, on the JPEG test rows."""
    mask = _labelled(rows, label_column) & (rows["distortion"] == TRAIN_DISTORTION).to_numpy()
    y = rows.loc[mask, label_column].astype(int).to_numpy()
    return binary_metrics(y, p_useful[mask], threshold)


def by_distortion(
    rows: pd.DataFrame, label_column: str, p_useful: np.ndarray, threshold: float = 0.5
) -> dict[str, dict]:
    """Accuracy per distortion (beyond JPEG), and per distortion and level."""
    out: dict[str, dict] = {}
    for name, group in rows.groupby("distortion"):
        mask = _labelled(group, label_column)
        idx = group.index[mask]
        y = group.loc[idx, label_column].astype(int).to_numpy()
        entry = binary_metrics(y, p_useful[idx], threshold)
        entry["levels"] = {}
        for level, g in group[mask].groupby("level"):
            yl = g[label_column].astype(int).to_numpy()
            pl = p_useful[g.index]
            entry["levels"][str(level)] = {
                "n": len(g),
                "useful_rate": float(yl.mean()),
                "predicted_useful_rate": float((pl >= threshold).mean()),
                "accuracy": float(((pl >= threshold) == yl.astype(bool)).mean()),
            }
        out[str(name)] = entry
    return out


def continuous_utility(rows: pd.DataFrame, p_useful: np.ndarray, column: str = "utility") -> dict:
    """Eq. 2-3: distribution of the continuous utility per distortion and level, and Spearman with p_useful."""
    if column not in rows.columns:
        return {"available": False}
    u = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=np.float64)
    out: dict = {"available": True, "column": column, "spearman_all": spearman(p_useful, u), "distortions": {}}
    for name, group in rows.groupby("distortion"):
        idx = group.index.to_numpy()
        levels = {}
        for level, g in group.groupby("level"):
            vals = u[g.index.to_numpy()]
            vals = vals[np.isfinite(vals)]
            if vals.size:
                q = np.percentile(vals, [10, 25, 50, 75, 90])
                levels[str(level)] = {"n": int(vals.size), "mean": float(vals.mean()), "p10_25_50_75_90": q.tolist()}
        out["distortions"][str(name)] = {"spearman": spearman(p_useful[idx], u[idx]), "levels": levels}
    return out


def fig1_baselines(
    rows: pd.DataFrame,
    p_useful: np.ndarray,
    label_column: str,
    limit: int,
    seed: int,
    energy_net: Callable | None,
    nr: bool = True,
) -> dict:
    """Fig. 1: baseline scores of useful vs non-useful JPEG test images, and their AUROC."""
    mask = _labelled(rows, label_column) & (rows["distortion"] == TRAIN_DISTORTION).to_numpy()
    idx = np.flatnonzero(mask)
    if limit and idx.size > limit:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=limit, replace=False))
    scores: dict[str, list[float]] = {k: [] for k in ("psnr", "ssim", "brisque", "niqe", "jpeg_quality", "energy")}
    pristine_cache: dict[str, np.ndarray] = {}
    for i in tqdm(idx, desc="baselines", unit="img", leave=False):
        row = rows.iloc[i]
        data = open(row["path"], "rb").read()  # noqa: SIM115 - read and closed at once
        distorted = load_rgb(row["path"])
        src = row["pristine"]
        if src not in pristine_cache:
            pristine_cache.clear()  # rows are grouped by source: keep one pristine image in memory
            pristine_cache[src] = load_rgb(src)
        ref = baselines.reference_scores(pristine_cache[src], distorted, data, nr=nr)
        if energy_net is not None:
            ref["energy"] = float(baselines.energy(energy_net([distorted]))[0])
        for k in scores:
            scores[k].append(ref.get(k, float("nan")))
    y = rows[label_column].to_numpy()[idx].astype(int)
    samples = {k: [None if not np.isfinite(v) else round(float(v), 5) for v in vals] for k, vals in scores.items()}
    samples["p_useful"] = [round(float(v), 5) for v in p_useful[idx]]
    table = {}
    for name, vals in samples.items():
        arr = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
        ok = np.isfinite(arr)
        if not ok.any():
            table[name] = {"auroc": NAN, "n": 0}
            continue
        table[name] = {
            "auroc": auroc(y[ok], baselines.oriented(name, arr[ok])),
            "n": int(ok.sum()),
            "median_useful": float(np.median(arr[ok & (y == 1)])) if (ok & (y == 1)).any() else NAN,
            "median_non_useful": float(np.median(arr[ok & (y == 0)])) if (ok & (y == 0)).any() else NAN,
            "orientation": "higher = more useful" if baselines.ORIENTATION[name] > 0 else "lower = more useful",
        }
    return {
        "n": int(idx.size),
        "n_useful": int(y.sum()),
        "label_column": label_column,
        "auroc": table,
        "labels": y.tolist(),
        "samples": samples,
    }


def intra_task_classification(rows: pd.DataFrame, holdout: str, filters: dict[str, np.ndarray], thr: float) -> dict:
    """Fig. 2(a): accuracy of a network (not a labeler of the filter) on all JPEG test images, then on the
    images each filter keeps (p_useful >= thr), overall and per level."""
    pred, ref = f"{holdout}.pred", f"{holdout}.ref"
    if pred not in rows.columns or ref not in rows.columns:
        return {"available": False, "reason": f"manifest has no {pred} / {ref} columns"}
    jpeg = (rows["distortion"] == TRAIN_DISTORTION).to_numpy() & rows[pred].notna().to_numpy()
    correct = (rows[pred].to_numpy() == rows[ref].to_numpy()) & jpeg
    levels = sorted(rows.loc[jpeg, "level"].unique())
    out: dict = {"available": True, "network": holdout, "n": int(jpeg.sum()), "threshold": thr}
    out["unfiltered"] = {"accuracy": float(correct[jpeg].mean()), "levels": {}}
    for lv in levels:
        m = jpeg & (rows["level"] == lv).to_numpy()
        out["unfiltered"]["levels"][str(lv)] = float(correct[m].mean())
    out["filters"] = {}
    for name, p in filters.items():
        keep = jpeg & (p >= thr)
        entry = {
            "accuracy": float(correct[keep].mean()) if keep.any() else NAN,
            "kept": float(keep.sum() / jpeg.sum()),
        }
        entry["levels"] = {}
        for lv in levels:
            m = keep & (rows["level"] == lv).to_numpy()
            entry["levels"][str(lv)] = float(correct[m].mean()) if m.any() else NAN
        out["filters"][name] = entry
    return out
