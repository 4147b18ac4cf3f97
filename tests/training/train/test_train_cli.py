"""Training on a tiny real manifest (scikit-image photos, real JPEG bytes, a real ResNet-18)."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support.training import make_manifest

from app.preprocess import PreprocessSpec, preprocess_bytes
from app.usage import UsageError
from training.manifest import read_manifest, read_manifests
from training.train import cli as train
from training.train.dataset import load_split, mark_validation, normalize, summarize
from training.train.epoch import epoch_order, hide_quality
from training.train.model import PretrainedWeightsMissing, build_model, pretrained_path

FAST = ["--size", "64", "--batch-size", "16", "--lr", "0.01", "--balance", "none", "--schedule", "constant"]
FAST += ["--val-fraction", "0", "--threads", "2"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_manifest(tmp_path_factory.mktemp("labels"))


@pytest.fixture(scope="module")
def trained(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs of the tiny run, shared by the tests below (training is deterministic)."""
    run = tmp_path_factory.mktemp("runs") / "straight"
    assert train.main([str(manifest), "--output-dir", str(run), "--epochs", "2", *FAST]) == 0
    return run


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=False)["model"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_data_summary_counts_splits_labels_and_levels(tmp_path: Path, fmt: str) -> None:
    summary = summarize(read_manifest(make_manifest(tmp_path, fmt)))
    assert summary["splits"]["test"] == {"total": 8, "useful": 4, "non_useful": 4, "unlabelled": 0}
    assert summary["distortions"]["jpeg"] == ["5", "10", "50", "90"]


@pytest.mark.parametrize(
    ("native_crop", "quality_map"),
    [(False, False), (True, False), (True, True), (False, True)],
    ids=["one-view", "two-views", "two-views-quality", "one-view-quality"],
)
def test_cached_pixels_are_the_service_preprocessing(
    manifest: Path, tmp_path: Path, native_crop: bool, quality_map: bool
) -> None:
    spec = PreprocessSpec(size=64, native_crop=native_crop, quality_map=quality_map)
    df = read_manifest(manifest)
    split = load_split(df, "test", spec, tmp_path)
    want = np.stack([preprocess_bytes(Path(p).read_bytes(), spec) for p in split.frame["path"]])
    got = normalize(split.pixels, spec).numpy()
    assert got.shape[1] == spec.channels
    np.testing.assert_array_equal(got, want)  # bit for bit: the same table-free float32 operations
    again = load_split(df, "test", spec, tmp_path)  # from the cache
    assert torch.equal(again.pixels, split.pixels)
    if quality_map:  # the JPEG qualities the manifest's images were written at, read back from their headers
        stored = {int(q) for q in split.pixels[:, -1].flatten().unique()}
        assert stored == {int(level) for level in split.frame["level"]}


def test_balancing_gives_both_classes_equal_weight() -> None:
    labels = torch.tensor([1] * 10 + [0] * 3)
    order, copies = epoch_order(labels, "augment", torch.Generator().manual_seed(0))
    assert len(order) == 20 and int((labels[order] == 0).sum()) == 10 and int(copies.sum()) == 7
    assert bool((labels[order][copies] == 0).all())
    order, copies = epoch_order(labels, "weighted", torch.Generator().manual_seed(0))
    assert len(order) == 20 and not copies.any()
    order, _ = epoch_order(labels, "none", torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(13))


def test_training_improves_its_loss_and_writes_a_checkpoint(trained: Path) -> None:
    run = trained
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert {"model", "optimizer", "scheduler", "epoch", "args", "rng"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["args"]["size"] == 64
    assert (run / "best.pt").is_file() and (run / "curve.png").stat().st_size > 0
    assert set(history[0]["test"]) >= {"accuracy", "balanced_accuracy", "auroc", "confusion"}


def test_resume_continues_exactly(manifest: Path, trained: Path, tmp_path: Path) -> None:
    straight, interrupted = trained, tmp_path / "interrupted"
    train.main([str(manifest), "--output-dir", str(interrupted), "--epochs", "1", *FAST])
    assert torch.load(interrupted / "checkpoint.pt", weights_only=False)["epoch"] == 1
    # resume without repeating the flags: they come from the checkpoint; --epochs extends the run
    train.main(["--output-dir", str(interrupted), "--resume", "auto", "--epochs", "2"])
    a, b = _weights(straight), _weights(interrupted)
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((interrupted / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    # the extending resume is part of the recipe the model card prints
    command = torch.load(interrupted / "checkpoint.pt", weights_only=False)["command"]
    assert command.count("\n") == 1 and command.splitlines()[1].endswith("--resume auto --epochs 2")


def test_test_only_evaluates_a_checkpoint(trained: Path, capsys: pytest.CaptureFixture) -> None:
    run = trained
    assert train.main(["--output-dir", str(run), "--resume", str(run / "best.pt"), "--test-only"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test"]["n"] == 8 and sum(map(sum, result["test"]["confusion"])) == 8


def test_pretrained_comes_only_from_the_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsMissing, match=str(pretrained_path())):
        build_model(pretrained=True)
    reference = build_model(pretrained=False)
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    state |= {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    pretrained_path().parent.mkdir(parents=True)
    torch.save(state, pretrained_path())
    loaded = build_model(pretrained=True)
    assert torch.equal(loaded.conv1.weight, reference.conv1.weight)
    assert loaded.fc.out_features == 2


def test_bf16_autocast_trains(manifest: Path, tmp_path: Path) -> None:
    run = tmp_path / "bf16"
    assert (
        train.main([str(manifest), "--output-dir", str(run), "--epochs", "1", "--max-steps", "1", "--bf16", *FAST]) == 0
    )
    history = json.loads((run / "history.json").read_text())
    assert np.isfinite(history[0]["train"]["loss"]) and history[0]["train"]["steps"] == 1


def test_init_starts_from_another_utility_checkpoint(trained: Path, manifest: Path, tmp_path: Path) -> None:
    run = tmp_path / "init"
    argv = [str(manifest), "--output-dir", str(run), "--epochs", "1", "--max-steps", "1", *FAST, "--lr", "0"]
    assert train.main([*argv, "--init", str(trained / "best.pt")]) == 0
    start = torch.load(trained / "best.pt", weights_only=False)["model"]
    assert torch.equal(_weights(run)["conv1.weight"], start["conv1.weight"])


def test_init_from_another_layout_keeps_the_trunk_and_starts_the_heads_fresh(
    trained: Path, manifest: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The README's detection recipe: a 1-view model from a 2-view, quality-plane classification checkpoint."""
    start = torch.load(trained / "best.pt", weights_only=False)
    other = build_model(False, views=2, aux=3, quality=True).state_dict()
    moved = {k: other[k] if k.startswith(("fc.", "aux.", "quality.")) else v for k, v in start["model"].items()}
    moved |= {k: v for k, v in other.items() if k.startswith(("aux.", "quality."))}
    wide = tmp_path / "wide.pt"
    torch.save({**start, "model": moved}, wide)
    run = tmp_path / "init-wide"
    argv = [str(manifest), "--output-dir", str(run), "--epochs", "1", "--max-steps", "1", *FAST, "--lr", "0"]
    with caplog.at_level(logging.INFO, logger="training.train.model"):
        assert train.main([*argv, "--init", str(wide)]) == 0
    assert torch.equal(_weights(run)["layer4.1.conv2.weight"], start["model"]["layer4.1.conv2.weight"])
    assert "fresh (other layout): fc.weight" in caplog.text  # fc.bias has the same shape: kept


def test_init_from_a_file_with_no_trunk_is_a_usage_error(manifest: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pt"
    torch.save({"model": {"head.weight": torch.zeros(2, 2)}}, bogus)
    argv = [str(manifest), "--output-dir", str(tmp_path / "r"), "--epochs", "1", *FAST, "--init", str(bogus)]
    with pytest.raises(UsageError, match="no ResNet-18 trunk weight fits"):
        train.main(argv)


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_the_same_weights(
    manifest: Path, trained: Path, tmp_path: Path
) -> None:
    """A supervisor that restarts `train --resume auto` after each SIGKILL ends where a straight run ends."""
    run = tmp_path / "killed"
    command = [sys.executable, "-m", "training.train", str(manifest), "--output-dir", str(run), "--epochs", "2"]
    command += [*FAST, "--resume", "auto"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    delays = random.Random(7).sample([1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 8.0], 4)
    kills = 0
    for delay in [*delays, None]:  # the last attempt runs to the end
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            rc = proc.wait(timeout=delay if delay is not None else 300)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        assert rc == 0
        if (run / "checkpoint.pt").is_file() and torch.load(run / "checkpoint.pt", weights_only=False)["epoch"] == 2:
            break
    assert kills >= 1, "no attempt was killed: the delays are too long for this machine"
    a, b = _weights(trained), _weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2]
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") or ".tmp" in p.name]


def test_a_new_select_metric_restarts_the_choice_of_best() -> None:
    best = {"epoch": 2, "metric": "accuracy", "value": 0.75}
    assert not train.is_better({"accuracy": 0.70, "balanced_accuracy": 0.70}, best, "accuracy")
    assert train.is_better({"accuracy": 0.60, "balanced_accuracy": 0.60}, best, "balanced_accuracy")


def test_hidden_quality_rows_read_as_unknown_and_the_rest_keep_theirs() -> None:
    x = torch.zeros(2000, 4, 8, 8)
    x[:, -1] = 0.5
    out = hide_quality(x.clone(), 0.3, torch.Generator().manual_seed(0))
    hidden = out[:, -1].eq(-1.0).all(dim=(1, 2))
    assert 0.25 < hidden.float().mean() < 0.35
    assert out[~hidden, -1].eq(0.5).all() and out[:, :-1].eq(0).all()


def test_validation_is_the_runs_named_photos_or_a_seeded_share_of_train(tmp_path: Path) -> None:
    df = read_manifest(make_manifest(tmp_path / "labels"))
    named = mark_validation(df, {"val_fraction": 0.5, "seed": 0}, {"val_sources": ["chelsea", "cat"]})
    # a distilled run names its held-out photos; test rows stay test even when named
    assert set(named.loc[named["split"] == "val", "source"]) == {"chelsea"}
    assert (named["split"] == "test").sum() == (df["split"] == "test").sum()
    joined = read_manifests([make_manifest(tmp_path / "a" / "labels"), make_manifest(tmp_path / "b" / "other")])
    named = mark_validation(joined, {}, {"val_sources": ["chelsea"]})  # sources read 'labels/chelsea'
    assert set(named.loc[named["split"] == "val", "source"]) == {"labels/chelsea", "other/chelsea"}
    shared = mark_validation(df, {"val_fraction": 0.5, "seed": 0}, {})
    assert shared.loc[shared["split"] == "val", "source"].nunique() == 2  # half of the 4 training photos
    assert (mark_validation(df, {"val_fraction": 0.0}, {})["split"] != "val").all()
