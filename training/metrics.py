"""Binary utility metrics, shared by training, export, the report and the scorecard.

One convention: a number that is undefined (AUROC with one class, accuracy of no rows, a
correlation of fewer than 3 pairs) is NaN, never None; :func:`defined` tells them apart. The
confusion matrix is ``[[tn, fp], [fn, tp]]`` (rows: true non-useful, useful; columns: predicted).
Plain numpy, so that every number can be checked by hand in the tests; no pandas import (a frame
is only read through its columns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

NAN = float("nan")


def defined(x: float | None) -> bool:
    """Whether ``x`` is a number (not None, not NaN)."""
    return x is not None and x == x


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank (as scipy.stats.rankdata)."""
    s = np.asarray(values, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")
    out = np.empty(len(s), dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(s[order])) + 1] if len(s) else np.array([], dtype=int)
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends, strict=True):
        out[order[a:b]] = (a + b + 1) / 2.0
    return out


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties
    count 1/2 (Mann-Whitney U on average ranks). Rows with a non-finite score are left out; NaN when
    a class is absent."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    keep = np.isfinite(s)
    y, s = y[keep], s[keep]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return NAN
    return float((ranks(s)[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def confusion(labels: np.ndarray, predicted: np.ndarray) -> list[list[int]]:
    """``[[tn, fp], [fn, tp]]`` of 0/1 labels against 0/1 (or boolean) predictions."""
    cm = np.zeros((2, 2), dtype=int)
    np.add.at(cm, (np.asarray(labels).astype(int), np.asarray(predicted).astype(int)), 1)
    return cm.tolist()


def _ratio(a: int, b: int) -> float:
    return a / b if b else NAN


def binary_metrics(labels: np.ndarray, p_useful: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, balanced accuracy, AUROC, both recalls and the confusion matrix of p_useful >= threshold
    against 1/0 labels."""
    y = np.asarray(labels).astype(int)
    p = np.asarray(p_useful, dtype=np.float64)
    (tn, fp), (fn, tp) = confusion(y, p >= threshold)
    recalls = [r for r in (_ratio(tn, tn + fp), _ratio(tp, tp + fn)) if defined(r)]
    return {
        "n": int(y.size),
        "n_useful": int(y.sum()),
        "accuracy": _ratio(tp + tn, int(y.size)),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else NAN,
        "auroc": auroc(y, p),
        "recall_non_useful": _ratio(tn, tn + fp),
        "recall_useful": _ratio(tp, tp + fn),
        "confusion": [[tn, fp], [fn, tp]],
        "threshold": threshold,
    }


def best_threshold(y_true: np.ndarray, p_useful: np.ndarray) -> float:
    """The threshold with the highest balanced accuracy (midway between neighbouring scores); 0.5
    when one class is missing. Chosen on validation, it becomes the model's default threshold."""
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(p_useful, dtype=np.float64)
    if y.all() or not y.any():
        return 0.5
    order = np.argsort(p, kind="mergesort")
    p, y = p[order], y[order]
    # threshold above position i: rows 0..i are called non-useful
    tnr = np.cumsum(~y) / (~y).sum()
    tpr = 1.0 - np.cumsum(y) / y.sum()
    distinct = np.r_[np.diff(p) > 0, True]
    bal = np.where(distinct, (tnr + tpr) / 2.0, -1.0)
    i = int(np.argmax(bal))
    return float(np.clip((p[i] + p[min(i + 1, len(p) - 1)]) / 2.0 if i + 1 < len(p) else p[i] + 1e-6, 1e-4, 1 - 1e-4))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r; NaN with fewer than 3 points or a constant input."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return NAN
    return float(np.corrcoef(a, b)[0, 1])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (Pearson's r of average ranks) over the pairs where both values are
    finite; NaN with fewer than 3 such pairs or a constant side."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    return pearson(ranks(x[keep]), ranks(y[keep]))


def level_key(level: object) -> tuple[int, float | str]:
    """Sort key of a level name: numbers by value first ('2' before '10'), then the other names."""
    try:
        return (0, float(str(level)))
    except ValueError:
        return (1, str(level))


def level_groups(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row positions per 'distortion/level' (e.g. 'jpeg/5')."""
    keys = frame["distortion"].astype(str).to_numpy() + "/" + frame["level"].astype(str).to_numpy()
    return {k: np.flatnonzero(keys == k) for k in sorted(set(keys))}


def within_level_auroc(frame: pd.DataFrame, y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUROC inside each distortion level with both classes (what the level alone cannot rank), and their mean."""
    out = {}
    for key, rows in level_groups(frame).items():
        value = auroc(y[rows], score[rows])
        if defined(value):
            out[key] = value
    out["mean"] = float(np.mean(list(out.values()))) if out else NAN
    return out


def per_level(frame: pd.DataFrame, scores: np.ndarray, threshold: float = 0.5) -> dict[str, dict[str, Any]]:
    """Accuracy per 'distortion|level' group of manifest rows (``distortion``, ``level``, ``label``)."""
    y = frame["label"].to_numpy()
    right = (scores >= threshold).astype(int) == y
    out = {}
    keys = frame["distortion"].astype(str) + "|" + frame["level"].astype(str)
    for key in sorted(keys.unique(), key=lambda k: (k.split("|")[0], level_key(k.split("|")[1]))):
        rows = (keys == key).to_numpy()
        out[key] = {"n": int(rows.sum()), "useful": int(y[rows].sum()), "accuracy": float(right[rows].mean())}
    return out


def aux_agreement(
    pred: np.ndarray, target: np.ndarray, mask: np.ndarray, frame: pd.DataFrame, names: list[str]
) -> dict[str, dict[str, float]]:
    """Per auxiliary target: Pearson r with its target over the rows where it is defined, and the
    mean r inside each distortion level (the go / no-go number for distillation: the level alone
    explains none of it)."""
    groups = level_groups(frame)
    out = {}
    for k, name in enumerate(names):
        m = mask[:, k]
        within = [pearson(pred[rows[m[rows]], k], target[rows[m[rows]], k]) for rows in groups.values()]
        within = [r for r in within if defined(r)]
        out[name] = {
            "r": pearson(pred[m, k], target[m, k]),
            "r_within_level": float(np.mean(within)) if within else NAN,
        }
    return out
