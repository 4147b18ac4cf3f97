"""Binary utility metrics, and evaluation of an exported model folder on a manifest.

Shared with the evaluation step: ``binary_metrics`` for scores already computed,
``evaluate_folder`` for an ONNX model folder run through the service's own engine.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from app.preprocess import preprocess_bytes

log = logging.getLogger(__name__)


def auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN with one class."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over runs of equal scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(y_true: np.ndarray, p_useful: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, balanced accuracy, AUROC and the confusion matrix (rows: true non-useful, useful)."""
    y = np.asarray(y_true).astype(int)
    pred = (np.asarray(p_useful) >= threshold).astype(int)
    cm = np.zeros((2, 2), dtype=int)
    np.add.at(cm, (y, pred), 1)
    recalls = [cm[k, k] / cm[k].sum() for k in (0, 1) if cm[k].sum() > 0]
    n = int(cm.sum())
    return {
        "n": n,
        "accuracy": float(np.trace(cm) / n) if n else float("nan"),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
        "auroc": auroc(y, p_useful),
        "recall_non_useful": float(cm[0, 0] / cm[0].sum()) if cm[0].sum() else float("nan"),
        "recall_useful": float(cm[1, 1] / cm[1].sum()) if cm[1].sum() else float("nan"),
        "confusion": cm.tolist(),
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
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def level_groups(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row positions per 'distortion/level' (e.g. 'jpeg/5')."""
    keys = frame["distortion"].astype(str).to_numpy() + "/" + frame["level"].astype(str).to_numpy()
    return {k: np.flatnonzero(keys == k) for k in sorted(set(keys))}


def within_level_auroc(frame: pd.DataFrame, y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUROC inside each distortion level with both classes (what the level alone cannot rank), and their mean."""
    out = {}
    for key, rows in level_groups(frame).items():
        value = auroc(y[rows], score[rows])
        if np.isfinite(value):
            out[key] = value
    out["mean"] = float(np.mean(list(out.values()))) if out else float("nan")
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
        within = [r for r in within if np.isfinite(r)]
        out[name] = {
            "r": pearson(pred[m, k], target[m, k]),
            "r_within_level": float(np.mean(within)) if within else float("nan"),
        }
    return out


def format_metrics(m: dict[str, Any]) -> str:
    (tn, fp), (fn, tp) = m["confusion"]
    text = (
        f"acc {m['accuracy']:.4f} bal_acc {m['balanced_accuracy']:.4f} auroc {m['auroc']:.4f} "
        f"confusion [[tn {tn} fp {fp}] [fn {fn} tp {tp}]] n {m['n']}"
    )
    if "within_level_auroc" in m:
        text += f" within-level auroc {m['within_level_auroc']['mean']:.3f}"
    for name, agree in m.get("aux", {}).items():
        text += f" | {name} r {agree['r']:.3f} within {agree['r_within_level']:.3f}"
    return text


def confusion_table(m: dict[str, Any]) -> str:
    """The confusion matrix as a Markdown table."""
    (tn, fp), (fn, tp) = m["confusion"]
    return (
        "| true \\ predicted | non-useful | useful |\n|---|---|---|\n"
        f"| non-useful | {tn} | {fp} |\n| useful | {fn} | {tp} |\n"
    )


def predict_folder(folder: Path, paths: list[str], batch_size: int = 32, threads: int = 0) -> tuple[np.ndarray, float]:
    """p(useful) for image files through ``app.engine.UtilityModel``; also returns model images/s."""
    from app.engine import UtilityModel

    model = UtilityModel(folder.name, folder, ["CPUExecutionProvider"], intra_op_threads=threads)
    model.warmup((1,))
    scores, compute = [], 0.0
    for start in tqdm(range(0, len(paths), batch_size), desc=f"eval {folder.name}", mininterval=5):
        batch = np.stack(
            [preprocess_bytes(Path(p).read_bytes(), model.spec) for p in paths[start : start + batch_size]]
        )
        t0 = time.perf_counter()
        scores.append(model.predict(batch))
        compute += time.perf_counter() - t0
    return np.concatenate(scores), len(paths) / compute if compute else float("nan")


def evaluate_folder(folder: Path, frame: pd.DataFrame, threshold: float = 0.5, threads: int = 0) -> dict[str, Any]:
    """Metrics of an exported model folder on manifest rows (``path`` and ``label`` columns)."""
    scores, ips = predict_folder(folder, frame["path"].tolist(), threads=threads)
    out = binary_metrics(frame["label"].to_numpy(), scores, threshold)
    out["images_per_s"] = ips
    out["per_level"] = per_level(frame, scores, threshold)
    return out


def per_level(frame: pd.DataFrame, scores: np.ndarray, threshold: float = 0.5) -> dict[str, dict[str, Any]]:
    """Accuracy per 'distortion|level' group of manifest rows."""
    y = frame["label"].to_numpy()
    right = (scores >= threshold).astype(int) == y
    out = {}
    keys = frame["distortion"].astype(str) + "|" + frame["level"].astype(str)
    for key in sorted(keys.unique(), key=lambda k: (k.split("|")[0], _num(k.split("|")[1]))):
        rows = (keys == key).to_numpy()
        out[key] = {"n": int(rows.sum()), "useful": int(y[rows].sum()), "accuracy": float(right[rows].mean())}
    return out


def _num(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text
