"""The utility definitions of the paper (eq. 2, 3, 5, 6 and the CCSP band), unit and property tests."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.utility import (
    UtilityRule,
    classification_utility,
    combine,
    detection_utility,
    f_utility,
    iou,
    match_score,
)

prob = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
rec = st.floats(min_value=0.01, max_value=0.99, allow_nan=False)
vote = st.sampled_from([0, 1, None])
PAPER = UtilityRule(name="paper")
RELATIVE = UtilityRule(name="relative", r_high=0.5, r_low=0.5)


def test_f_utility_values() -> None:
    assert f_utility(1.0, 1.0, 0.5) == pytest.approx(1.0)
    assert f_utility(0.5, 0.9, 0.5) == pytest.approx(0.0)
    # (0.3 - 0.5) / (1 - (0.8 - 0.5)) = -0.2 / 0.7
    assert f_utility(0.3, 0.8, 0.5) == pytest.approx(-0.2 / 0.7)


@pytest.mark.parametrize("phi_rec", [0.0, 1.0, -0.1, 1.5])
def test_f_utility_refuses_bad_phi_rec(phi_rec: float) -> None:
    with pytest.raises(ValueError, match="phi_rec"):
        f_utility(0.5, 0.5, phi_rec)


@given(phi=prob, phi_ref=prob, phi_rec=rec)
def test_f_utility_sign_follows_recognition(phi: float, phi_ref: float, phi_rec: float) -> None:
    f = f_utility(phi, phi_ref, phi_rec)
    assert math.isfinite(f)
    assert (f < 0) == (phi < phi_rec)


@given(a=prob, b=prob, phi_ref=prob, phi_rec=rec)
def test_f_utility_increases_with_phi(a: float, b: float, phi_ref: float, phi_rec: float) -> None:
    lo, hi = sorted((a, b))
    assert f_utility(lo, phi_ref, phi_rec) <= f_utility(hi, phi_ref, phi_rec)


@given(phi=prob, phi_ref=prob, phi_rec=st.floats(min_value=0.5, max_value=0.99))
def test_f_utility_at_most_one_when_phi_rec_at_least_half(phi: float, phi_ref: float, phi_rec: float) -> None:
    assert f_utility(phi, phi_ref, phi_rec) <= 1.0 + 1e-12


def test_operators_of_eq3() -> None:
    assert combine([0.2, 0.4, None], "mean") == pytest.approx(0.3)
    assert combine([0.2, 0.4, None], "max") == 0.4
    assert combine([1, 1, 0], "majority") == 1
    assert combine([1, None, None], "majority") is None
    assert combine([0, 0, None], "majority") == 0
    assert combine([1, 1, 1], "unanimity") == 1
    assert combine([0, 0, 0], "unanimity") == 0
    assert combine([1, 1, 0], "unanimity") is None
    assert combine([1, None], "unanimity") is None
    assert combine([], "unanimity") is None
    with pytest.raises(ValueError, match="operator"):
        combine([1], "median")


@given(votes=st.lists(vote, min_size=1, max_size=7))
def test_unanimity_implies_majority(votes: list[int | None]) -> None:
    unanimous = combine(votes, "unanimity")
    if unanimous is not None:
        assert combine(votes, "majority") == unanimous
        assert all(v == unanimous for v in votes)


@given(votes=st.lists(vote, min_size=1, max_size=7))
def test_majority_is_symmetric(votes: list[int | None]) -> None:
    flipped = [None if v is None else 1 - v for v in votes]
    m, mf = combine(votes, "majority"), combine(flipped, "majority")
    assert (m is None and mf is None) or m == 1 - mf


@given(values=st.lists(prob, min_size=1, max_size=5))
def test_mean_is_between_min_and_max(values: list[float]) -> None:
    assert min(values) - 1e-12 <= combine(values, "mean") <= combine(values, "max") + 1e-12


@pytest.mark.parametrize(
    ("ref", "pred", "phi", "phi_ref", "paper", "relative"),
    [
        pytest.param(3, 3, 0.95, 0.97, 1, 1, id="survives-confident"),
        pytest.param(3, 3, 0.60, 0.70, None, 1, id="survives-soft: paper band, relative useful"),
        pytest.param(3, 3, 0.30, 0.80, None, None, id="survives-lost-half: band for both"),
        pytest.param(3, 7, 0.05, 0.90, 0, 0, id="flips-collapsed"),
        pytest.param(3, 7, 0.20, 0.30, None, None, id="flips-kept-most: band for both"),
        pytest.param(3, 7, 0.12, 0.40, None, 0, id="flips-soft: paper band, relative non-useful"),
    ],
)
def test_classification_utility(ref, pred, phi, phi_ref, paper, relative) -> None:
    assert classification_utility(ref, pred, phi, phi_ref, PAPER) == paper
    assert classification_utility(ref, pred, phi, phi_ref, RELATIVE) == relative


@given(phi=prob, phi_ref=prob, same=st.booleans())
def test_useful_needs_the_decision_to_survive(phi: float, phi_ref: float, same: bool) -> None:
    for rule in (PAPER, RELATIVE):
        u = classification_utility(1, 1 if same else 2, phi, phi_ref, rule)
        if u == 1:
            assert same
        if u == 0:
            assert not same


@given(phi=prob, phi_ref=prob)
def test_paper_rule_matches_ccsp_thresholds(phi: float, phi_ref: float) -> None:
    assert (classification_utility(0, 0, phi, phi_ref, PAPER) == 1) == (phi >= 0.9)
    assert (classification_utility(0, 1, phi, phi_ref, PAPER) == 0) == (phi < 0.1)


def test_rule_defaults_and_validation() -> None:
    rule = UtilityRule()
    assert (rule.t_high, rule.t_low, rule.det_conf, rule.det_iou) == (0.9, 0.1, 0.5, 0.5)
    assert rule.to_dict()["name"] == "relative"
    with pytest.raises(ValueError, match="rule"):
        UtilityRule(name="soft")
    with pytest.raises(ValueError, match="T_L"):
        UtilityRule(t_high=0.1, t_low=0.9)
    with pytest.raises(ValueError, match="r_H"):
        UtilityRule(r_high=1.5)


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0


box = st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(1, 50), st.floats(1, 50)).map(
    lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3])
)


@given(a=box, b=box)
def test_iou_is_symmetric_and_bounded(a, b) -> None:
    assert iou(a, b) == pytest.approx(iou(b, a))
    assert 0.0 <= iou(a, b) <= 1.0 + 1e-9


def test_detection_utility_eq6() -> None:
    ref = (10.0, 10.0, 50.0, 90.0)
    dets = [
        ((12.0, 11.0, 50.0, 88.0), "person", 0.8),  # same object, same label
        ((12.0, 11.0, 50.0, 88.0), "dog", 0.99),  # same box, other label: does not count
        ((60.0, 10.0, 100.0, 90.0), "person", 0.95),  # other place: IoU 0
    ]
    phi = match_score(ref, "person", dets, 0.5)
    assert phi == pytest.approx(0.8)
    assert detection_utility(phi, UtilityRule()) == 1
    assert detection_utility(match_score(ref, "person", dets[1:], 0.5), UtilityRule()) == 0
    assert detection_utility(0.49, UtilityRule()) == 0
