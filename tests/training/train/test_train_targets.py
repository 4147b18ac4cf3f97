"""Dense soft targets (training/train/targets.py) and how training draws the rows that carry them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support.training import add_facts, make_manifest

from training.manifest import UNLABELLED, read_manifests
from training.train.epoch import epoch_order
from training.train.targets import SEVERITY, aux_targets, defined_targets, labellers_of


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


def test_a_reencoded_jpeg_has_its_first_pass_severity() -> None:
    """The header of a jpeg-reencode row says q75-95; its severity target is the damage of the first pass."""
    frame = pd.DataFrame({"distortion": ["jpeg", "jpeg-reencode"], "param": [2.0, 2.0], "level": 9})
    values, mask = aux_targets(frame, [SEVERITY])
    assert mask[:, 0].all() and values[0, 0] == values[1, 0] == pytest.approx(1.0)


def test_dropped_rows_are_drawn_as_often_as_they_occur() -> None:
    labels = torch.tensor([1] * 10 + [0] * 5 + [UNLABELLED] * 5)
    order, _ = epoch_order(labels, "weighted", torch.Generator().manual_seed(0))
    assert len(order) == 25
    drawn = labels[order]
    assert 2 <= int((drawn == UNLABELLED).sum()) <= 9 and 5 <= int((drawn == 0).sum()) <= 16
