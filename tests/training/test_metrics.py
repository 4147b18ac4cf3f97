"""The one metrics module (training/metrics.py): every number checked by hand or against a reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.metrics import (
    auroc,
    aux_agreement,
    best_threshold,
    binary_metrics,
    defined,
    level_key,
    per_level,
    spearman,
    within_level_auroc,
)


def test_auroc_hand_computed() -> None:
    # positives 0.9, 0.4; negatives 0.6, 0.1: pairs won 0.9>0.6, 0.9>0.1, 0.4>0.1; lost 0.4<0.6 -> 3/4
    assert auroc(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1])) == pytest.approx(0.75)
    assert auroc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)  # a tie counts 1/2
    assert math.isnan(auroc(np.array([1, 1]), np.array([0.5, 0.7])))  # one class: undefined


def test_auroc_matches_scikit_learn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(y * 0.7, 1.0), 1)  # rounded: many ties
    assert auroc(y, s) == pytest.approx(sklearn_metrics.roc_auc_score(y, s))


def test_binary_metrics_hand_computed() -> None:
    y = np.array([1, 1, 1, 0])
    p = np.array([0.9, 0.8, 0.2, 0.7])  # tp 2, fn 1, fp 1, tn 0
    m = binary_metrics(y, p)
    assert m["confusion"] == [[0, 1], [1, 2]]  # [[tn, fp], [fn, tp]]
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 0) / 2)
    assert spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 25, 100])) == pytest.approx(1.0)


def test_metrics_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)  # ties on purpose
    pairs = [(a > b) + 0.5 * (a == b) for a in s[y == 1] for b in s[y == 0]]
    assert auroc(y, s) == pytest.approx(np.mean(pairs))
    m = binary_metrics(np.array([0, 0, 1, 1, 1]), np.array([0.2, 0.7, 0.9, 0.6, 0.1]))
    assert m["confusion"] == [[1, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_best_threshold_maximises_balanced_accuracy() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(300), np.ones(700)].astype(int)
    p = np.clip(np.r_[rng.normal(0.55, 0.1, 300), rng.normal(0.8, 0.1, 700)], 0, 1)
    t = best_threshold(y, p)
    best = binary_metrics(y, p, t)["balanced_accuracy"]
    for other in np.linspace(0.05, 0.95, 91):
        assert binary_metrics(y, p, other)["balanced_accuracy"] <= best + 1e-12
    assert 0.6 < t < 0.75
    assert best_threshold(np.ones(5), np.linspace(0, 1, 5)) == 0.5


def test_within_level_metrics_ignore_what_the_level_explains() -> None:
    frame = pd.DataFrame({"distortion": "jpeg", "level": [1] * 4 + [2] * 4})
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    level_only = np.array([0.9] * 4 + [0.1] * 4)  # ranks the levels, nothing inside them
    assert within_level_auroc(frame, y, level_only)["mean"] == 0.5
    inside = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    assert within_level_auroc(frame, y, inside) == {"jpeg/1": 1.0, "jpeg/2": 1.0, "mean": 1.0}
    target = inside[:, None]
    agree = aux_agreement(level_only[:, None], target, np.ones_like(target, bool), frame, ["t"])
    assert agree["t"]["r"] > 0.8 and np.isnan(agree["t"]["r_within_level"])


def test_an_undefined_number_is_nan_everywhere() -> None:
    m = binary_metrics(np.array([], dtype=int), np.array([]))
    assert m["n"] == 0 and m["confusion"] == [[0, 0], [0, 0]]
    assert not any(defined(m[k]) for k in ("accuracy", "balanced_accuracy", "auroc", "recall_useful"))
    one_class = binary_metrics(np.array([1, 1]), np.array([0.9, 0.2]))
    assert one_class["recall_useful"] == 0.5 and math.isnan(one_class["recall_non_useful"])
    assert one_class["balanced_accuracy"] == 0.5  # the mean of the recalls that are defined
    assert math.isnan(spearman(np.array([1.0, 2.0]), np.array([3.0, 4.0])))
    assert not defined(None) and not defined(float("nan")) and defined(0.0)


def test_auroc_leaves_out_rows_without_a_finite_score() -> None:
    assert auroc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, np.nan, np.inf])) == 1.0


def test_spearman_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    a, b = np.round(rng.normal(size=50), 1), np.round(rng.normal(size=50), 1)
    b[3] = np.nan
    keep = np.isfinite(b)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a[keep], b[keep]).statistic)


def test_levels_sort_by_value_then_by_name() -> None:
    assert sorted(["10", "2", "b", "1.5", "a"], key=level_key) == ["1.5", "2", "10", "a", "b"]
    frame = pd.DataFrame({"distortion": ["jpeg"] * 3 + ["blur"], "level": [10, 2, 2, 1], "label": [1, 0, 1, 0]})
    levels = per_level(frame, np.array([0.9, 0.9, 0.9, 0.1]))
    assert list(levels) == ["blur|1", "jpeg|2", "jpeg|10"]
    assert levels["jpeg|2"] == {"n": 2, "useful": 1, "accuracy": 0.5}
