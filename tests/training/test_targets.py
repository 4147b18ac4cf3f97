"""Dense soft targets (training/targets.py) and the metrics that judge them."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support.training import add_facts, make_manifest

from training.data import UNLABELLED, read_manifests
from training.loop import epoch_order
from training.metrics import aux_agreement, best_threshold, binary_metrics, within_level_auroc
from training.targets import SEVERITY, aux_targets, defined_targets, labellers_of


@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_facts(make_manifest(tmp_path_factory.mktemp("facts")))


def test_every_row_gets_targets_where_they_are_defined(labels: Path) -> None:
    df = read_manifests([labels], keep_unlabelled=True)
    assert (df["label"] == UNLABELLED).sum() == 1  # the dropped row is kept, for its targets
    names = defined_targets(df)
    assert names == [SEVERITY, "net-a.retained", "net-b.retained"] and labellers_of(df) == ["net-a", "net-b"]
    values, mask = aux_targets(df, names)
    q = df["param"].to_numpy(dtype=float)
    np.testing.assert_allclose(values[:, 0], np.log(100 / q) / math.log(50), rtol=1e-6)
    np.testing.assert_allclose(values[mask[:, 1], 1], np.clip(df["net-a.phi"] / 0.8, 0, 1)[mask[:, 1]], rtol=1e-6)
    assert not mask[0, 2] and mask[1:, 2].all()  # net-b does not count for row 0's source
    assert ((values >= 0) & (values <= 1)).all()


def test_pristine_is_severity_zero_and_other_distortions_have_none() -> None:
    frame = pd.DataFrame({"distortion": ["pristine", "jpeg-hq", "blur"], "param": [0.0, 95.0, 2.0], "level": 1})
    values, mask = aux_targets(frame, [SEVERITY])
    assert values[0, 0] == 0 and 0 < values[1, 0] < 0.02 and mask[:, 0].tolist() == [True, True, False]


def test_several_manifests_join_with_their_collection(labels: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(labels, other)
    df = read_manifests([labels, other])
    assert sorted(df["collection"].unique()) == sorted([labels.name, "other"])
    assert df["source"].str.startswith(("other/", f"{labels.name}/")).all()
    assert df.groupby("source")["split"].nunique().max() == 1
    assert len(df) == 2 * len(read_manifests([labels]))


def test_dropped_rows_are_drawn_as_often_as_they_occur() -> None:
    labels = torch.tensor([1] * 10 + [0] * 5 + [UNLABELLED] * 5)
    order, _ = epoch_order(labels, "weighted", torch.Generator().manual_seed(0))
    assert len(order) == 25
    drawn = labels[order]
    assert 2 <= int((drawn == UNLABELLED).sum()) <= 9 and 5 <= int((drawn == 0).sum()) <= 16


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
