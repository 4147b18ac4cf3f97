"""Export round trip: real ResNet-18 checkpoint -> ONNX model folder -> the service's engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from support.training import add_facts, make_manifest

from app.contract import ModelContract, latest_version_dir
from app.engine import UtilityModel
from app.preprocess import PreprocessSpec, preprocess_bytes
from app.usage import UsageError
from training.export import cli as export
from training.export import stack
from training.export.convert import ParityError, to_onnx, verify_onnx
from training.images import as_png
from training.train import cli as train
from training.train.model import build_model, model_from_checkpoint

SIZE = 64


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    manifest = make_manifest(tmp_path_factory.mktemp("labels"))
    out = tmp_path_factory.mktemp("runs") / "r"
    argv = [str(manifest), "--output-dir", str(out), "--epochs", "1", "--size", str(SIZE), "--batch-size", "8"]
    assert train.main([*argv, "--lr", "0.01", "--val-fraction", "0", "--max-steps", "2"]) == 0
    return out


def test_export_round_trips_into_the_service_engine(run: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert export.main([str(run), "--models-dir", str(models), "--name", "tiny", "--int8", "--calib-images", "8"]) == 0
    folder = models / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["1", "README.md", "config.pbtxt"]
    assert [p.name for p in (folder / "1").iterdir()] == ["model.onnx"]
    proto = onnx.load(str(folder / "1" / "model.onnx"))
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    contract = ModelContract.from_metadata({p.key: p.value for p in proto.metadata_props})
    assert contract.preprocess.size == SIZE and contract.task == "classification"
    assert {"labelers", "distortions", "test_metrics", "training_args", "git_commit", "dataset"} <= set(
        contract.training
    )
    text = json.dumps(contract.training)
    assert str(run.parent) not in text and "SCRATCH/" in text  # no path of the build machine in /models
    assert 'backend: "onnxruntime"' in (folder / "config.pbtxt").read_text()
    card = (folder / "README.md").read_text()
    assert "Confusion matrix" in card and "int8" in card and "image-utility export" in card
    model = UtilityModel("tiny", folder, ["CPUExecutionProvider"])
    manifest = Path(torch.load(run / "best.pt", weights_only=False)["args"]["manifest"][0])
    images = sorted((manifest / "images").glob("*.jpg"))
    batch = np.stack([preprocess_bytes(p.read_bytes(), model.spec) for p in images[:3]])
    for n in (1, 3):  # dynamic batch axis
        p = model.predict(batch[:n])
        assert p.shape == (n,) and np.all((p >= 0) & (p <= 1))


def test_parity_check_fails_on_a_broken_export(run: Path, tmp_path: Path) -> None:
    ckpt = torch.load(run / "best.pt", weights_only=False)
    model = build_model()
    model.load_state_dict(ckpt["model"])
    spec = PreprocessSpec.from_json(ckpt["spec"])
    path = to_onnx(model, SIZE, tmp_path / "model.onnx", 17)
    batch = np.random.default_rng(0).standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)
    assert verify_onnx(path, model, batch, 1e-3) < 1e-3
    proto = onnx.load(str(path))
    bias = next(t for t in proto.graph.initializer if t.name == "fc.bias")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.01, "fc.bias"))
    onnx.save(proto, str(path))
    with pytest.raises(ParityError, match="differ by"):
        verify_onnx(path, model, batch, 1e-3)
    assert spec.size == SIZE


def test_a_two_view_model_with_soft_targets_exports_and_serves(tmp_path: Path) -> None:
    labels = add_facts(make_manifest(tmp_path / "labels"))
    out = tmp_path / "runs" / "two-view"
    argv = [str(labels), "--output-dir", str(out), "--epochs", "1", "--size", str(SIZE), "--batch-size", "8"]
    argv += ["--native-crop", "--optimizer", "adamw", "--lr", "1e-3", "--val-fraction", "0.25", "--max-steps", "2"]
    assert train.main(argv) == 0
    ckpt = torch.load(out / "best.pt", weights_only=False)
    assert ckpt["aux_targets"] == ["severity", "net-a.retained", "net-b.retained"]
    assert {"aux", "within_level_auroc", "best_threshold"} <= set(ckpt["history"][0]["val"])
    assert 0 < ckpt["best"]["threshold"] < 1
    models = tmp_path / "models"
    assert export.main([str(out), "--models-dir", str(models), "--name", "two"]) == 0
    model = UtilityModel("two", models / "two", ["CPUExecutionProvider"])
    assert model.spec.native_crop and model.describe()["input_size"] == [6, SIZE, SIZE]
    assert "dims: [ 6, 64, 64 ]" in (models / "two" / "config.pbtxt").read_text()
    images = sorted((labels / "images").glob("*.jpg"))[:3]
    p = model.predict(np.stack([preprocess_bytes(i.read_bytes(), model.spec) for i in images]))
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1))
    assert "two views" in model.contract.training["architecture"]


def test_the_validation_threshold_becomes_the_models_default(run: Path, tmp_path: Path) -> None:
    ckpt = torch.load(run / "best.pt", weights_only=False)
    ckpt["best"]["threshold"] = 0.37
    torch.save(ckpt, tmp_path / "best.pt")
    models = tmp_path / "models"
    manifest = str(Path(ckpt["args"]["manifest"][0]))
    argv = [str(tmp_path / "best.pt"), "--models-dir", str(models), "--name", "t", "--manifest", manifest]
    assert export.main(argv) == 0
    model = UtilityModel("t", models / "t", ["CPUExecutionProvider"])
    assert model.contract.threshold == pytest.approx(0.37)
    assert "default threshold 0.370" in (models / "t" / "README.md").read_text()
    argv += ["--name", "chosen", "--threshold", "0.5"]  # the operator's choice wins; validation's is kept
    assert export.main(argv) == 0
    chosen = UtilityModel("chosen", models / "chosen", ["CPUExecutionProvider"])
    assert chosen.contract.threshold == 0.5
    assert chosen.contract.training["best_epoch"]["threshold_on_validation"] == pytest.approx(0.37)


def test_exporting_into_an_existing_model_folder_adds_a_version(run: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    argv = [str(run), "--models-dir", str(models), "--name", "tiny", "--parity-images", "2"]
    assert export.main(argv) == 0
    folder = models / "tiny"
    first = (folder / "1" / "model.onnx").read_bytes()
    (folder / "README.md").write_text("the first card\n")
    assert export.main([*argv, "--version", "second"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["1", "2", "README.md", "config.pbtxt"]
    assert (folder / "1" / "model.onnx").read_bytes() == first
    assert (folder / "1" / "README.md").read_text() == "the first card\n"
    assert "second" in (folder / "README.md").read_text()
    assert latest_version_dir(folder).name == "2"
    assert UtilityModel("tiny", folder, ["CPUExecutionProvider"]).version == "second"


def test_a_model_reading_the_jpeg_quality_exports_int8_and_serves_jpeg_and_png(tmp_path: Path) -> None:
    labels = add_facts(make_manifest(tmp_path / "labels"))
    out = tmp_path / "runs" / "quality"
    argv = [str(labels), "--output-dir", str(out), "--epochs", "1", "--size", str(SIZE), "--batch-size", "8"]
    argv += ["--native-crop", "--quality-map", "--optimizer", "adamw", "--val-fraction", "0.25", "--max-steps", "2"]
    assert train.main(argv) == 0
    models = tmp_path / "models"
    assert export.main([str(out), "--models-dir", str(models), "--name", "q", "--int8", "--calib-images", "8"]) == 0
    model = UtilityModel("q", models / "q", ["CPUExecutionProvider"])
    assert model.spec.quality_map and model.describe()["input_size"] == [7, SIZE, SIZE]
    assert model.describe()["preprocessing"]["quality_map"] is True
    assert "dims: [ 7, 64, 64 ]" in (models / "q" / "config.pbtxt").read_text()
    assert "quality factor" in model.contract.training["architecture"]
    jpeg = sorted((labels / "images").glob("*.jpg"))[0].read_bytes()
    x_jpeg = preprocess_bytes(jpeg, model.spec)
    x_png = preprocess_bytes(as_png(jpeg), model.spec)
    np.testing.assert_array_equal(x_jpeg[:6], x_png[:6])  # same pixels; only the header differs
    assert x_jpeg[-1, 0, 0] > 0 and x_png[-1, 0, 0] == -1.0
    p = model.predict(np.stack([x_jpeg, x_png]))
    assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))


def test_stacking_with_the_header_quality_changes_jpeg_answers_only(tmp_path: Path) -> None:
    labels = add_facts(make_manifest(tmp_path / "labels"))
    out = tmp_path / "runs" / "stack"
    argv = [str(labels), "--output-dir", str(out), "--epochs", "1", "--size", str(SIZE), "--batch-size", "8"]
    argv += ["--quality-map", "--optimizer", "adamw", "--val-fraction", "0.75", "--max-steps", "2"]
    assert train.main(argv) == 0
    models = tmp_path / "models"
    assert export.main([str(out), "--models-dir", str(models), "--name", "s", "--stack-quality"]) == 0
    served = UtilityModel("s", models / "s", ["CPUExecutionProvider"])
    fit = served.contract.training["quality_stack"]
    assert fit["rows"] == 12 and "header's log quality" in served.contract.training["architecture"]
    assert served.contract.threshold == pytest.approx(fit["val_best_threshold"])
    net = model_from_checkpoint(torch.load(out / "best.pt", weights_only=False))
    jpeg = sorted((labels / "images").glob("*.jpg"))[0].read_bytes()
    x = np.stack([preprocess_bytes(jpeg, served.spec), preprocess_bytes(as_png(jpeg), served.spec)])
    with torch.no_grad():
        logits = net(torch.from_numpy(x))
    z = (logits[:, 1] - logits[:, 0]).numpy()
    logq = float(x[0, -1, 0, 0])
    expected_jpeg = 1 / (1 + np.exp(-(fit["a"] * z[0] + fit["b"] * logq + fit["c"])))
    expected_png = 1 / (1 + np.exp(-(fit["d"] * z[1] + fit["e"])))  # no header: its own line
    np.testing.assert_allclose(served.predict(x), [expected_jpeg, expected_png], atol=1e-3)

    # an existing model folder, stacked into a new version beside it: the same stack, from the same answers
    plain = tmp_path / "plain"
    assert export.main([str(out), "--models-dir", str(plain), "--name", "s"]) == 0
    assert stack.main([str(plain / "s"), str(labels), "--models-dir", str(plain), "--version", "v-stacked"]) == 0
    assert sorted(p.name for p in (plain / "s").iterdir() if p.is_dir()) == ["1", "2"]
    again = UtilityModel("s", plain / "s", ["CPUExecutionProvider"])
    assert again.version == "v-stacked" and again.contract.training["quality_stack"]["a"] == pytest.approx(fit["a"])
    card = (plain / "s" / "README.md").read_text()
    assert "## Quality stack" in card and "- Version `v-stacked`, file `2/model.onnx`" in card
    np.testing.assert_allclose(again.predict(x), served.predict(x), atol=1e-5)
    # a stacked model stacked again: the old stack taken off first, so the same fit on the same network
    assert stack.main([str(plain / "s"), str(labels), "--models-dir", str(plain), "--version", "v-again"]) == 0
    third = UtilityModel("s", plain / "s", ["CPUExecutionProvider"])
    assert (
        third.version == "v-again"
        and third.contract.training["stacked_from"] == again.contract.training["stacked_from"]
    )
    assert third.contract.training["quality_stack"]["a"] == pytest.approx(fit["a"])
    np.testing.assert_allclose(third.predict(x), served.predict(x), atol=1e-5)
    card = (plain / "s" / "README.md").read_text()
    assert card.count("## Quality stack") == 1 and "- Version `v-again`, file `3/model.onnx`" in card

    # the same rows in two label folders, each named with --manifest: the same fit
    import pandas as pd

    df = pd.read_csv(labels / "manifest.csv")
    halves = [tmp_path / "half-a", tmp_path / "half-b"]
    for k, folder in enumerate(halves):
        shutil.copytree(labels, folder)
        part = df[df["source"].isin(sorted(df["source"].unique())[k::2])]
        part.to_csv(folder / "manifest.csv", index=False)
    argv = [str(out), "--models-dir", str(tmp_path / "two"), "--name", "s", "--stack-quality"]
    assert export.main([*argv, "--manifest", str(halves[0]), "--manifest", str(halves[1])]) == 0
    two = UtilityModel("s", tmp_path / "two" / "s", ["CPUExecutionProvider"]).contract.training["quality_stack"]
    assert two["rows"] == 12 and two["a"] == pytest.approx(fit["a"])
    # no validation photo among the manifests' rows: a usage error naming the option, nothing written
    df.assign(split="test").to_csv(halves[0] / "manifest.csv", index=False)
    with pytest.raises(UsageError, match="--stack-quality"):
        export.main([*argv[:2], str(tmp_path / "none"), *argv[3:], "--manifest", str(halves[0])])
    assert not (tmp_path / "none" / "s").exists()


def test_int8_is_not_shipped_unmeasured_when_the_manifests_have_no_test_rows(
    run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run trained on train-split-only folders: int8's accuracy cannot be compared, so fp32 ships."""
    import pandas as pd

    labels = make_manifest(tmp_path / "train-only")
    df = pd.read_csv(labels / "manifest.csv")
    df.assign(split="train").to_csv(labels / "manifest.csv", index=False)
    models = tmp_path / "models"
    argv = [str(run), "--manifest", str(labels), "--models-dir", str(models), "--name", "t", "--int8"]
    with caplog.at_level("WARNING", logger="training.export"):
        assert export.main([*argv, "--calib-images", "8"]) == 0
    assert "no test rows to measure int8" in caplog.text
    proto = onnx.load(str(models / "t" / "1" / "model.onnx"))
    assert not any(n.op_type.startswith(("QLinear", "Quantize", "Dequantize")) for n in proto.graph.node)
