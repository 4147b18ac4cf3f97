"""The quality stack's fit: the mix that ranks validation best, then a calibrated scale and offset."""

from __future__ import annotations

import numpy as np

from training.export.stack import _logistic, fit_weights
from training.metrics import auroc


def _rows(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels set mostly by the compression level, a little by the image; the network reads both, noisily."""
    rng = np.random.default_rng(seed)
    level = rng.integers(0, 9, n)
    logq = 1.0 - level / 9 + rng.normal(0, 0.01, n)
    hard = rng.normal(0, 1, n)
    y = (2.5 * (logq - 0.5) + 0.3 * hard + rng.logistic(0, 0.3, n) > 0).astype(int)
    z = 4 * (logq - 0.5) + 0.3 * hard + rng.normal(0, 1.5, n)  # between-level noise the likelihood overweighs
    return z, logq, y


def test_the_mix_ranks_at_least_as_well_as_the_likelihood_fit_and_each_input_alone() -> None:
    z, logq, y = _rows()
    a, b, c = fit_weights(z, logq, y)
    stacked = auroc(y, a * z + b * logq + c)
    la, lb, lc = _logistic([z, logq], y)
    assert stacked >= auroc(y, la * z + lb * logq + lc)
    assert stacked >= max(auroc(y, logq), auroc(y, z))
    assert b > 0 and a >= 0


def test_the_scale_is_calibrated_at_the_chosen_mix() -> None:
    z, logq, y = _rows(seed=1)
    a, b, c = fit_weights(z, logq, y)
    p = 1 / (1 + np.exp(-(a * z + b * logq + c)))

    def bacc(t: float) -> float:
        return 0.5 * (np.mean(p[y == 1] >= t) + np.mean(p[y == 0] < t))

    # class-balanced: p = 0.5 is (close to) the balanced-accuracy optimum at the chosen mix
    assert bacc(0.5) >= max(bacc(t) for t in np.linspace(0.05, 0.95, 91)) - 0.01
