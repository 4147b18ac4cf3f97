"""What one labeler says about a source and its distorted versions: the raw facts of the manifest.

For each distorted image and labeler this records the reference decision, the decision, φ (the
confidence given to the reference on the distorted image), φ' (the same on the pristine image) and
whether the source counts for the labeler at all. Utilities and labels are computed from these
facts alone (:mod:`training.manifest`), so they can be recomputed under any rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from training.labelers.base import Detection
from training.utility import Box, UtilityRule, match_score

Facts = dict[str, Any]


def classification_facts(pristine: np.ndarray, distorted: Sequence[np.ndarray], truth: int | None) -> list[Facts]:
    """Reference = ground truth when given, else the pristine decision. With ground truth the source
    counts only when the pristine decision is right (as in the paper)."""
    top = int(np.argmax(pristine))
    ref = top if truth is None else int(truth)
    valid = truth is None or top == ref
    phi_ref = float(pristine[ref])
    return [
        {"ref": ref, "pred": int(np.argmax(p)), "phi": float(p[ref]), "phi_ref": phi_ref, "valid": valid}
        for p in distorted
    ]


def reference_objects(
    pristine: Sequence[Detection], truth: Sequence[tuple[Box, str]] | None, rule: UtilityRule
) -> tuple[list[tuple[Box, str]], list[float]]:
    """The reference objects and φ' of each: ground-truth boxes (φ' = the best matching pristine
    detection), or the pristine detections with confidence ≥ det_conf (φ' = their confidence)."""
    refs = list(truth) if truth is not None else [(b, lab) for b, lab, score in pristine if score >= rule.det_conf]
    return refs, [match_score(box, label, pristine, rule.det_iou) for box, label in refs]


def detection_facts(
    pristine: Sequence[Detection],
    distorted: Sequence[Sequence[Detection]],
    truth: Sequence[tuple[Box, str]] | None,
    rule: UtilityRule,
) -> list[Facts]:
    """Eq. 6 facts: of the reference objects found on the pristine image (confidence ≥ det_conf,
    IoU ≥ det_iou), the one best found again on the distorted image gives φ and φ'."""
    refs, phi_refs = reference_objects(pristine, truth, rule)
    found = [k for k, phi in enumerate(phi_refs) if phi >= rule.det_conf]
    out: list[Facts] = []
    for dets in distorted:
        if not found:
            out.append({"ref": "", "pred": "", "phi": None, "phi_ref": None, "valid": False, "n_ref": 0, "n_found": 0})
            continue
        phis = {k: match_score(refs[k][0], refs[k][1], dets, rule.det_iou) for k in found}
        best = max(found, key=lambda k: (phis[k], phi_refs[k]))
        out.append(
            {
                "ref": refs[best][1],
                "pred": refs[best][1] if phis[best] > 0 else "",
                "phi": phis[best],
                "phi_ref": phi_refs[best],
                "valid": True,
                "n_ref": len(found),
                "n_found": sum(phis[k] >= rule.det_conf for k in found),
            }
        )
    return out
