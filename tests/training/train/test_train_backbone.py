"""The teacher-backed variant (training/train/backbone.py, head.py): a frozen EfficientNet-Lite0 and
a trained head, from a tiny real manifest through train, export and the service's engine."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support.training import make_manifest

from app.engine import UtilityModel
from app.preprocess import preprocess_bytes
from training.export import cli as export
from training.train import cli as train
from training.train.backbone import LITE_FEATURES, STATS, build_lite_model, logit_stats
from training.train.model import model_from_checkpoint

SIZE = 64  # the trunk pools globally: any size runs, a small one keeps the test quick


@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny manifest with two labellers' own columns that disagree on two rows."""
    out = make_manifest(tmp_path_factory.mktemp("labels"))
    df = pd.read_csv(out / "manifest.csv")
    df["net-a.u"] = df["label"]
    df["net-b.u"] = df["label"]
    df.loc[[1, 5], "net-b.u"] = 1 - df.loc[[1, 5], "label"]
    df.to_csv(out / "manifest.csv", index=False)
    return out


def test_the_trunk_stays_frozen_and_in_eval_mode_while_the_head_learns() -> None:
    torch.manual_seed(0)
    model = build_lite_model("efficientnet-lite0", quality=True).train()
    assert not model.trunk.training and model.head.training
    before = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    x = torch.randn(4, 4, SIZE, SIZE)
    x[:, 3] = 0.5
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 0, 1])).backward()
    optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in model.trunk.state_dict().items())  # BN statistics too
    assert model.embed(x[:, :3]).shape == (4, LITE_FEATURES + STATS)


def test_logit_statistics() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    energy, top, entropy, margin = logit_stats(logits).T
    assert torch.allclose(energy, torch.logsumexp(logits, 1))
    assert torch.allclose(top, torch.log_softmax(logits, 1).max(1).values)
    assert torch.allclose(entropy[1], torch.log(torch.tensor(3.0)))
    assert margin.tolist() == [2.0, 0.0]


def test_train_export_and_serve_with_a_held_out_labeller(
    labels: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "runs" / "lite"
    argv = [str(labels), "--output-dir", str(run), "--backbone", "efficientnet-lite0", "--size", str(SIZE)]
    argv += ["--quality-map", "--label-column", "net-a.u+net-b.u", "--epochs", "3", "--lr", "0.01"]
    argv += ["--val-fraction", "0", "--select-metric", "auroc"]
    assert train.main(argv) == 0
    ckpt = torch.load(run / "best.pt", weights_only=False)
    assert ckpt["data"]["label_column"] == "net-a.u+net-b.u"
    assert ckpt["data"]["splits"]["train"]["total"] == 14  # 16 labelled training rows, 2 disagreements dropped
    assert len(ckpt["history"]) >= 1 and ckpt["best"]["metric"] == "auroc"
    # a second run embeds nothing again: every row comes from the cache
    with caplog.at_level(logging.INFO, logger="training.train.head"):
        assert train.main([*argv[:2], str(tmp_path / "runs" / "again"), *argv[3:]]) == 0
    assert not [r for r in caplog.records if "embedding" in r.getMessage()]

    # --test-only measures the checkpoint's own head and trains nothing
    before = (run / "best.pt").stat().st_mtime_ns
    assert train.main(["--output-dir", str(run), "--resume", str(run / "best.pt"), "--test-only"]) == 0
    assert (run / "best.pt").stat().st_mtime_ns == before

    models = tmp_path / "models"
    assert export.main([str(run), "--models-dir", str(models), "--name", "lite"]) == 0
    served = UtilityModel("lite", models / "lite", ["CPUExecutionProvider"])
    assert served.spec.mean == (0.5, 0.5, 0.5) and served.describe()["input_size"] == [4, SIZE, SIZE]
    assert "efficientnet-lite0" in served.contract.training["architecture"]
    jpeg = sorted((labels / "images").glob("*.jpg"))[0].read_bytes()
    x = preprocess_bytes(jpeg, served.spec)
    net = model_from_checkpoint(ckpt)
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(x[None])), 1)[0, 1].item()
    np.testing.assert_allclose(served.predict(x[None]), [expected], atol=1e-3)
