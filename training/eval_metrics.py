"""Metrics of the evaluation: AUROC, accuracy, balanced accuracy, confusion matrix, Spearman.

Plain numpy (scipy only for Spearman) so that the numbers can be checked by hand in the tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata, spearmanr


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties count 1/2.

    Computed with the Mann-Whitney U statistic on mid-ranks. None when one class is absent.
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    keep = np.isfinite(s)
    y, s = y[keep], s[keep]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)  # average ranks for ties
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def confusion(labels: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    y = np.asarray(labels).astype(bool)
    p = np.asarray(predicted).astype(bool)
    return {
        "tp": int((y & p).sum()),
        "fn": int((y & ~p).sum()),
        "fp": int((~y & p).sum()),
        "tn": int((~y & ~p).sum()),
    }


def binary_metrics(labels: np.ndarray, p_useful: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, balanced accuracy, AUROC and the confusion matrix of p_useful against 1/0 labels."""
    y = np.asarray(labels).astype(int)
    p = np.asarray(p_useful, dtype=np.float64)
    if y.size == 0:
        return {"n": 0, "n_useful": 0, "accuracy": None, "balanced_accuracy": None, "auroc": None}
    cm = confusion(y, p >= threshold)
    tpr = cm["tp"] / (cm["tp"] + cm["fn"]) if cm["tp"] + cm["fn"] else None
    tnr = cm["tn"] / (cm["tn"] + cm["fp"]) if cm["tn"] + cm["fp"] else None
    rates = [r for r in (tpr, tnr) if r is not None]
    return {
        "n": int(y.size),
        "n_useful": int(y.sum()),
        "accuracy": (cm["tp"] + cm["tn"]) / y.size,
        "balanced_accuracy": float(np.mean(rates)) if rates else None,
        "auroc": auroc(y, p),
        "recall_useful": tpr,
        "recall_non_useful": tnr,
        "confusion": cm,
        "threshold": threshold,
    }


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation over the pairs where both values are finite; None if < 3 pairs."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return None
    return float(spearmanr(x[keep], y[keep]).statistic)
