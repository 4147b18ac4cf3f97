"""The quality stack's fit: the mix that ranks validation best, then a calibrated scale and offset."""

from __future__ import annotations

import numpy as np

from training.export.stack import PRISTINE_USEFUL, _logistic, fit_headerless, fit_weights
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


def test_header_less_files_are_judged_at_the_shared_threshold_where_their_balanced_accuracy_peaks() -> None:
    z, _, y = _rows(seed=2)
    z = 0.4 * z - 3.0  # without the header the network's logit sits far below the stacked threshold
    threshold = 0.49
    d, e = fit_headerless(z, y, threshold)
    assert d > 0
    said = d * z + e >= np.log(threshold / (1 - threshold))

    def bacc(pred: np.ndarray) -> float:
        return 0.5 * (np.mean(pred[y == 1]) + np.mean(~pred[y == 0]))

    best = max(bacc(z >= t) for t in np.quantile(z, np.linspace(0.01, 0.99, 197)))
    assert bacc(said) >= best - 0.01
    assert bacc(z >= np.log(threshold / (1 - threshold))) < best - 0.1  # what the raw logit gave


def test_a_network_that_does_not_rank_header_less_files_keeps_its_own_answer() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    z = -2.0 * y + rng.normal(0, 0.1, 500)  # ranks them backwards: no monotone fix exists
    assert fit_headerless(z, y, 0.5) == (1.0, 0.0)


def test_the_header_less_offset_never_turns_away_more_pristine_photos_than_allowed() -> None:
    z, _, y = _rows(seed=4)
    z = 0.4 * z - 3.0
    pristine = np.sort(z[y == 1])[-200:] - 1.5  # clean photos sit high, though not above every damaged one
    d, e = fit_headerless(z, y, 0.5, pristine)
    assert np.mean(d * pristine + e >= 0) >= PRISTINE_USEFUL
    free_d, free_e = fit_headerless(z, y, 0.5)
    assert free_d == d and free_e < e
    assert np.mean(free_d * pristine + free_e >= 0) < PRISTINE_USEFUL  # the bound is what moved it
