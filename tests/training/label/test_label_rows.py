"""Reference decisions, manifest rows and the split, on hand-made network outputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.label.groundtruth import GroundTruthError, ImagenetWnid
from training.label.measure import classification_facts, detection_facts
from training.label.rows import assign_splits, build_manifest, combined_label
from training.utility import UtilityRule

RULE = UtilityRule()


def probs(top: int, p: float, n: int = 10) -> np.ndarray:
    out = np.full(n, (1.0 - p) / (n - 1))
    out[top] = p
    return out


def test_classification_reference_is_pristine_decision_without_truth() -> None:
    facts = classification_facts(probs(3, 0.8), [probs(3, 0.6), probs(5, 0.7)], truth=None)
    assert [f["ref"] for f in facts] == [3, 3]
    assert [f["pred"] for f in facts] == [3, 5]
    assert facts[0]["phi"] == pytest.approx(0.6)
    assert facts[0]["phi_ref"] == pytest.approx(0.8)
    assert all(f["valid"] for f in facts)


def test_classification_source_counts_only_when_pristine_is_right() -> None:
    right = classification_facts(probs(3, 0.8), [probs(3, 0.6)], truth=3)
    wrong = classification_facts(probs(4, 0.8), [probs(3, 0.6)], truth=3)
    assert right[0]["valid"] and not wrong[0]["valid"]
    assert wrong[0]["ref"] == 3  # the reference is the ground truth, not the wrong decision


PERSON = (10.0, 10.0, 50.0, 90.0)


def test_detection_with_ground_truth() -> None:
    pristine = [(PERSON, "person", 0.9), ((60.0, 0.0, 80.0, 20.0), "person", 0.3)]
    kept = [((11.0, 12.0, 50.0, 88.0), "person", 0.7)]
    lost = [((11.0, 12.0, 50.0, 88.0), "person", 0.2)]
    facts = detection_facts(pristine, [kept, lost, []], [(PERSON, "person")], RULE)
    assert [f["valid"] for f in facts] == [True, True, True]
    assert [f["phi"] for f in facts] == pytest.approx([0.7, 0.2, 0.0])
    assert facts[0]["phi_ref"] == pytest.approx(0.9)
    assert [f["n_found"] for f in facts] == [1, 0, 0]
    assert [f["pred"] for f in facts] == ["person", "person", ""]


def test_detection_source_needs_a_reference_found_on_the_pristine_image() -> None:
    pristine = [((200.0, 200.0, 240.0, 280.0), "person", 0.9)]  # misses the annotated person
    facts = detection_facts(pristine, [pristine], [(PERSON, "person")], RULE)
    assert not facts[0]["valid"]
    assert not detection_facts([], [[]], None, RULE)[0]["valid"]  # nothing detected: no reference


def test_detection_pristine_reference_takes_confident_detections_only() -> None:
    pristine = [(PERSON, "face", 0.9), ((60.0, 0.0, 80.0, 20.0), "face", 0.4)]
    facts = detection_facts(pristine, [[((60.0, 0.0, 80.0, 20.0), "face", 0.95)]], None, RULE)
    assert facts[0]["n_ref"] == 1  # the 0.4 candidate is no reference object
    assert facts[0]["phi"] == 0.0


def test_combined_label_quorum_and_validity() -> None:
    assert combined_label([1, None, 1], [True, False, True], "unanimity", 1) == 1
    assert combined_label([1, 0, 1], [True, False, True], "unanimity", 1) == 1  # invalid vote ignored
    assert combined_label([1, 0, 1], [True, True, True], "unanimity", 1) is None
    assert combined_label([1, 0, 1], [True, True, True], "majority", 1) == 1
    assert combined_label([1, None, None], [True, False, False], "unanimity", 2) is None
    assert combined_label([None], [False], "unanimity", 1) is None


@settings(max_examples=30, deadline=None)
@given(names=st.lists(st.text("abcdefgh", min_size=1, max_size=6), min_size=1, max_size=60, unique=True))
def test_split_is_exact_deterministic_and_by_source(names: list[str]) -> None:
    splits = assign_splits(names, seed=0)
    assert splits == assign_splits(list(reversed(names)), seed=0)
    assert sum(v == "test" for v in splits.values()) == round(len(names) * 0.2)
    assert set(splits) == set(names)


def test_split_depends_on_seed() -> None:
    names = [f"img{i:03d}.jpg" for i in range(100)]
    assert assign_splits(names, 0) != assign_splits(names, 1)


def test_manifest_rows_recompute_from_facts() -> None:
    settings_ = {
        "task": "classification", "labelers": ["a", "b"], "rule": RULE.to_dict(), "combine": "unanimity", "quorum": 1,
    }  # fmt: skip
    rows = [
        {
            "image": f"images/jpeg/{lvl}/s.jpg",
            "distortion": "jpeg",
            "level": lvl,
            "param": q,
            "labelers": {"a": fa, "b": fb},
        }
        for lvl, q, fa, fb in [
            (1, 50, {"ref": 1, "pred": 1, "phi": 0.7, "phi_ref": 0.8, "valid": True},
             {"ref": 1, "pred": 1, "phi": 0.5, "phi_ref": 0.6, "valid": True}),
            (9, 2, {"ref": 1, "pred": 2, "phi": 0.05, "phi_ref": 0.8, "valid": True},
             {"ref": 1, "pred": 2, "phi": 0.05, "phi_ref": 0.6, "valid": False}),
        ]
    ]  # fmt: skip
    df = build_manifest([{"source": "s.png", "rows": rows}], {"s.png": "train"}, settings_)
    assert list(df["label"]) == [1, 0]
    assert list(df["label_paper"].isna()) == [True, False]  # 0.7 < T_H: the paper's band
    assert list(df["n_voters"]) == [2, 1]
    assert df.loc[0, "a.f"] == pytest.approx((0.7 - 0.5) / (1 - (0.8 - 0.5)))
    assert df.loc[0, "utility"] == pytest.approx((df.loc[0, "a.f"] + df.loc[0, "b.f"]) / 2)
    assert df["b.u"].isna().iloc[1]


def test_wnid_ground_truth_from_file_name_or_class_folder() -> None:
    truth = ImagenetWnid()
    assert truth.class_of("n01440764_tench.JPEG") == 0
    assert truth.class_of("val/n15075141/ILSVRC2012_val_00000001.JPEG") == 999
    with pytest.raises(GroundTruthError, match="wnid"):
        truth.class_of("astronaut.png")
