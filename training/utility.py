"""Utility definitions of Khan et al., sections III and IV. Pure Python: no torch, no I/O.

* :func:`f_utility` is eq. 2, the continuous full-reference utility f(φ, φ') with the recognition
  threshold φ_rec.
* :data:`OPERATORS` are the operators O of eq. 3 (mean, max, majority vote, unanimity).
* :func:`classification_utility` is eq. 5 with the CCSP band of section IV (``rule="paper"``:
  useful when the decision survives with φ ≥ T_H, non-useful when it flips with φ < T_L, dropped in
  between) or its relative variant for soft networks (``rule="relative"``: the thresholds are
  r_H·φ' and r_L·φ', i.e. relative to the network's own confidence on the pristine image).
* :func:`detection_utility` is eq. 6: useful when at least one reference object is found again with
  the same label, confidence ≥ 0.5 and IoU ≥ 0.5.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

Box = tuple[float, float, float, float]
RULES = ("relative", "paper")


@dataclass(frozen=True)
class UtilityRule:
    """Every threshold that turns network outputs into labels; the paper's values are the defaults
    except ``name``, whose default ``relative`` was chosen by measurement (docs/labels.md)."""

    name: str = "relative"
    t_high: float = 0.9  # T_H, paper: CCSP of a useful image
    t_low: float = 0.1  # T_L, paper: CCSP of a non-useful image
    r_high: float = 0.5  # relative rule: useful when φ ≥ r_H·φ'
    r_low: float = 0.5  # relative rule: non-useful when φ < r_L·φ'
    phi_rec: float = 0.5  # φ_rec of eq. 2
    det_conf: float = 0.5  # eq. 6 confidence threshold
    det_iou: float = 0.5  # eq. 6 / section IV IoU threshold

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.name!r}")
        if not 0.0 <= self.t_low <= self.t_high <= 1.0:
            raise ValueError(f"need 0 <= T_L <= T_H <= 1, got T_L={self.t_low}, T_H={self.t_high}")
        if not 0.0 <= self.r_low <= 1.0 or not 0.0 <= self.r_high <= 1.0:
            raise ValueError(f"r_H and r_L must lie in [0, 1], got {self.r_high}, {self.r_low}")
        for name in ("phi_rec", "det_conf", "det_iou"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in (0, 1), got {getattr(self, name)}")

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def f_utility(phi: float, phi_ref: float, phi_rec: float = 0.5) -> float:
    """Eq. 2: f(φ, φ') = (φ - φ_rec) / (1 - (φ' - φ_rec)); negative when φ < φ_rec."""
    if not 0.0 < phi_rec < 1.0:
        raise ValueError(f"phi_rec must lie in (0, 1), got {phi_rec}")
    return (phi - phi_rec) / (1.0 - (phi_ref - phi_rec))


def classification_utility(ref: int, pred: int, phi: float, phi_ref: float, rule: UtilityRule) -> int | None:
    """Eq. 5 with the CCSP band: 1 (useful), 0 (non-useful) or None (in the band, dropped)."""
    if rule.name == "paper":
        high, low = rule.t_high, rule.t_low
    else:
        high, low = rule.r_high * phi_ref, rule.r_low * phi_ref
    survives = pred == ref
    if survives and phi >= high:
        return 1
    if not survives and phi < low:
        return 0
    return None


def detection_utility(phi: float, rule: UtilityRule) -> int:
    """Eq. 6, given φ = the best confidence of a reference object found again (IoU ≥ det_iou)."""
    return int(phi >= rule.det_conf)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_score(ref: Box, label: str, dets: Sequence[tuple[Box, str, float]], iou_thr: float) -> float:
    """Highest confidence among detections of ``label`` overlapping ``ref`` with IoU ≥ iou_thr (0 if none)."""
    scores = [score for box, lab, score in dets if lab == label and iou(ref, box) >= iou_thr]
    return max(scores, default=0.0)


def mean_op(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def max_op(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return max(kept) if kept else None


def majority_op(votes: Sequence[int | None]) -> int | None:
    """1 or 0 when more than half of all voters say so (a dropped vote counts as an abstention)."""
    ones, zeros = sum(v == 1 for v in votes), sum(v == 0 for v in votes)
    if ones * 2 > len(votes):
        return 1
    if zeros * 2 > len(votes):
        return 0
    return None


def unanimity_op(votes: Sequence[int | None]) -> int | None:
    """Section IV: 1 when every network says 1, 0 when every network says 0, dropped otherwise."""
    if votes and all(v == 1 for v in votes):
        return 1
    if votes and all(v == 0 for v in votes):
        return 0
    return None


OPERATORS: dict[str, Callable[[Sequence], float | int | None]] = {
    "mean": mean_op,
    "max": max_op,
    "majority": majority_op,
    "unanimity": unanimity_op,
}
BINARY_OPERATORS = ("majority", "unanimity")


def combine(values: Sequence, operator: str) -> float | int | None:
    """Eq. 3: U(I) = O(U_1(I), ..., U_N(I))."""
    if operator not in OPERATORS:
        raise ValueError(f"operator must be one of {sorted(OPERATORS)}, got {operator!r}")
    return OPERATORS[operator](values)
