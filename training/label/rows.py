"""From part files to the manifest's rows: utilities, combined labels and the train/test split.

One row per distorted image. For every labeler L the columns ``L.ref``, ``L.pred``, ``L.phi`` (φ),
``L.phi_ref`` (φ') and ``L.valid`` are the raw facts; ``L.u`` (binary utility under the chosen
rule, empty when dropped), ``L.u_paper`` (under the paper's absolute thresholds) and ``L.f``
(eq. 2) are derived from them, as are ``label`` (the combined label: 1, 0 or empty when dropped),
``label_paper`` and ``utility`` (eq. 3 with the mean operator over f).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from training.labelers.base import CLASSIFICATION
from training.utility import UtilityRule, classification_utility, combine, detection_utility, f_utility

FACT_FIELDS = ("ref", "pred", "phi", "phi_ref", "valid")
DETECTION_FIELDS = ("n_ref", "n_found")
BASE_COLUMNS = (
    "source",
    "image",
    "distortion",
    "level",
    "param",
    "split",
    "label",
    "label_paper",
    "utility",
    "n_voters",
)


def assign_splits(sources: Sequence[str], seed: int, test_fraction: float = 0.2) -> dict[str, str]:
    """Exactly round(n·test_fraction) sources go to 'test', chosen by a seeded hash of their names:
    deterministic, independent of sharding, and a source is never on both sides."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction}")
    ranked = sorted(sources, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n_test = round(len(sources) * test_fraction)
    test = set(ranked[:n_test])
    return {s: "test" if s in test else "train" for s in sources}


def labeler_utility(facts: dict[str, Any], task: str, rule: UtilityRule) -> int | None:
    """Binary utility of one labeler on one distorted image; None when the source does not count
    for it or the image falls in the dropped band."""
    if not facts["valid"]:
        return None
    if task == CLASSIFICATION:
        return classification_utility(facts["ref"], facts["pred"], facts["phi"], facts["phi_ref"], rule)
    return detection_utility(facts["phi"], rule)


def combined_label(votes: Sequence[int | None], valid: Sequence[bool], operator: str, quorum: int) -> int | None:
    """Eq. 3 over the labelers for which the source counts; dropped when fewer than ``quorum`` count."""
    counted = [v for v, ok in zip(votes, valid, strict=True) if ok]
    if len(counted) < max(quorum, 1):
        return None
    return combine(counted, operator)


def manifest_row(
    source: str, split: str, row: dict[str, Any], labelers: Sequence[str], settings: dict[str, Any]
) -> dict[str, Any]:
    rule = UtilityRule(**settings["rule"])
    paper = replace(rule, name="paper")
    task, operator, quorum = settings["task"], settings["combine"], settings["quorum"]
    out: dict[str, Any] = {"source": source, "split": split}
    out.update({k: row[k] for k in ("image", "distortion", "level", "param")})
    votes, votes_paper, valid, fs = [], [], [], []
    for name in labelers:
        facts = row["labelers"][name]
        for key in FACT_FIELDS + (DETECTION_FIELDS if task != CLASSIFICATION else ()):
            out[f"{name}.{key}"] = facts[key]
        u, u_paper = labeler_utility(facts, task, rule), labeler_utility(facts, task, paper)
        f = f_utility(facts["phi"], facts["phi_ref"], rule.phi_rec) if facts["valid"] else None
        out[f"{name}.u"], out[f"{name}.u_paper"], out[f"{name}.f"] = u, u_paper, f
        votes.append(u)
        votes_paper.append(u_paper)
        valid.append(bool(facts["valid"]))
        fs.append(f)
    out["label"] = combined_label(votes, valid, operator, quorum)
    out["label_paper"] = combined_label(votes_paper, valid, operator, quorum)
    out["utility"] = combine(fs, "mean")
    out["n_voters"] = sum(valid)
    return out


def build_manifest(parts: Iterable[dict[str, Any]], splits: dict[str, str], settings: dict[str, Any]) -> pd.DataFrame:
    labelers = settings["labelers"]
    rows = [
        manifest_row(part["source"], splits[part["source"]], row, labelers, settings)
        for part in parts
        for row in part["rows"]
    ]
    df = pd.DataFrame(rows)
    ints = ["label", "label_paper"] + [f"{n}.{k}" for n in labelers for k in ("u", "u_paper")]
    for col in ints:
        df[col] = df[col].astype("Int64")
    ordered = list(BASE_COLUMNS) + [c for c in df.columns if c not in BASE_COLUMNS]
    return df[ordered].sort_values(["source", "distortion", "level"], kind="stable").reset_index(drop=True)
