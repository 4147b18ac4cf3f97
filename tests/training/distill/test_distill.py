"""The distillation stage (training/distill): options, views, the loss and schedule, and a real run on
scikit-image photos with the bundled teacher-backed variant, resumed, whose best.pt export reads."""

from __future__ import annotations

import argparse
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from support.training import PHOTOS, _photo, make_manifest

from app.engine import UtilityModel
from app.jpegquality import image_quality
from app.usage import UsageError
from training.distill import cli
from training.distill.checkpoint import last_step
from training.distill.loop import distill_loss, lr_at, student_spec
from training.distill.teacher import VariantTeacher, check_parity
from training.distill.views import KINDS, ViewSettings, ViewStream, as_inputs, distort
from training.export import cli as export
from training.options import distill as options
from training.options import native_bf16
from training.train.dataset import normalize
from training.train.model import model_from_checkpoint

TEACHER = Path(__file__).parents[3] / "models" / "utility-classification-lite0"


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        _photo(name).save(folder / f"{name}.jpg", quality=92)
    return folder


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        ([], "PHOTOS"),
        (["/no/such/folder"], "PHOTOS"),
        (["{photos}", "--steps", "0"], "--steps"),
        (["{photos}", "--temperature", "0"], "--temperature"),
        (["{photos}", "--teacher", "/no/such/model"], "--teacher"),
        (["{photos}", "--val-labels", "{photos}"], "--val-labels"),
        (["{photos}", "--ema", "1"], "--ema"),
        (["{photos}", "--mixup", "1.5"], "--mixup"),
        (["{photos}", "--crop-area", "0"], "--crop-area"),
    ],
)
def test_bad_options_are_refused_naming_the_option(photos: Path, argv: list[str], names: str) -> None:
    with pytest.raises(UsageError, match=names):
        options.parse([a.format(photos=photos) for a in argv])


def test_bf16_auto_follows_the_cpu_flags(tmp_path: Path) -> None:
    (tmp_path / "amx").write_text("flags : fpu avx2 avx512f amx_bf16 amx_tile\n")
    (tmp_path / "avx2").write_text("flags : fpu sse4_2 avx2 fma\n")
    assert native_bf16(tmp_path / "amx") and not native_bf16(tmp_path / "avx2")
    assert not native_bf16(tmp_path / "missing")
    assert options.parse([str(tmp_path), "--bf16", "off"]).bf16 is False


def test_each_view_kind_is_a_file_the_service_reads_as_such() -> None:
    img, rng = _photo("coffee"), np.random.default_rng(0)
    for kind, _ in KINDS:
        file, value = distort(img, kind, rng)
        if kind in ("jpeg", "jpeg-hq", "mix"):
            assert isinstance(file, bytes) and file[:2] == b"\xff\xd8"
            quality = image_quality(Image.open(io.BytesIO(file)))
            assert quality is not None and (kind == "mix" or abs(quality - value) <= 1)
        else:
            assert isinstance(file, Image.Image) and file.size == img.size
        s, t = as_inputs(file, (student_spec(64), student_spec(32)))
        assert s.shape == (7, 64, 64) and t.shape == (7, 32, 32) and s.dtype == np.uint8
        lossless = not isinstance(file, bytes)
        assert (s[6] == s[6, 0, 0]).all() and (s[6, 0, 0] == 0) == lossless  # "unknown" where no header says


def test_views_depend_on_seed_and_start_only(photos: Path) -> None:
    paths = sorted(photos.glob("*.jpg"))
    specs = (student_spec(32), student_spec(32))

    def first(seed: int, start: int) -> torch.Tensor:
        return next(iter(ViewStream(paths, specs, seed, start)))[0]

    assert torch.equal(first(0, 0), first(0, 0))
    assert not torch.equal(first(0, 0), first(0, 5))


def test_mixup_and_crop_area_reach_the_view_stream(photos: Path) -> None:
    args = options.parse([str(photos), "--mixup", "1", "--crop-area", "0.08", "--workers", "0"])
    loader = cli.views(args, sorted(photos.glob("*.jpg")), (student_spec(32), student_spec(32)), 0)
    assert loader.dataset.settings == ViewSettings(min_area=0.08, mixup_p=1.0)


def test_loss_is_lowest_when_the_student_answers_as_the_teacher() -> None:
    args = argparse.Namespace(temperature=4.0, imagenet_weight=0.5)
    t_u, t_in = torch.tensor([-8.0, 0.0, 9.0]), torch.randn(3, 1000)
    same = torch.stack([torch.zeros(3), t_u], 1)
    other = torch.stack([torch.zeros(3), -t_u], 1)
    assert distill_loss(same, t_in, t_u, t_in, args)[0] < distill_loss(other, -t_in, t_u, t_in, args)[0]
    assert distill_loss(same, t_in, t_u, t_in, args)[1]["imagenet_kl"] == pytest.approx(0.0, abs=1e-5)


def test_schedule_warms_up_then_decays_to_zero() -> None:
    args = argparse.Namespace(lr=1e-3, warmup=10, steps=100)
    lrs = [lr_at(s, args) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:])) and lr_at(100, args) == 0.0


@pytest.mark.slow
def test_the_rebuilt_teacher_matches_its_onnx_model(photos: Path) -> None:
    teacher = VariantTeacher(TEACHER)
    pixels = np.stack([as_inputs(p.read_bytes(), (teacher.spec,))[0] for p in sorted(photos.glob("*.jpg"))[:3]])
    assert check_parity(teacher, normalize(torch.from_numpy(pixels), teacher.spec).numpy()) < 1e-2


@pytest.mark.slow
def test_a_run_resumes_and_writes_a_checkpoint_export_reads(photos: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = [str(photos), "--teacher", str(TEACHER), "--output-dir", str(run), "--size", "32", "--batch-size", "2"]
    common += ["--val-photos", "1", "--eval-every", "1", "--workers", "0", "--test-fraction", "0", "--bf16", "off"]
    assert cli.main([*common, "--steps", "3", "--max-steps", "2", "--warmup", "1"]) == 0
    assert len(json.loads((run / "history.json").read_text())) == 2
    assert cli.main([*common, "--steps", "3", "--resume", "auto"]) == 0
    # the photos, the teacher and the recipe come back from the checkpoint; --steps extends the run
    assert cli.main(["--output-dir", str(run), "--resume", "auto", "--steps", "4", "--workers", "0"]) == 0
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert {"auroc", "r", "r_within_level", "pristine_useful"} <= set(history[-1]["val"])
    best = torch.load(run / "best.pt", weights_only=False)
    assert not any(k.startswith("aux.") for k in best["model"]) and best["aux_targets"] == []
    model = model_from_checkpoint(best)
    x = torch.zeros(1, 7, 32, 32)
    assert model(x).shape == (1, 2) and 0 < best["best"]["threshold"] < 1
    assert best["data"]["sources"] == {"train": len(PHOTOS) - 1, "val": 1}
    assert len(best["data"]["val_sources"]) == 1 and best["data"]["val_sources"][0] in {f"{n}.jpg" for n in PHOTOS}
    models = tmp_path / "models"
    labels = make_manifest(tmp_path / "labels")
    assert export.main([str(run), "--manifest", str(labels), "--models-dir", str(models), "--name", "m"]) == 0
    card = (models / "m" / "README.md").read_text()
    assert "distilled" in card and "utility-classification-lite0" in card
    # the last step rather than the best on validation: checkpoint.pt exports too, at its own threshold
    assert export.main([str(run / "checkpoint.pt"), "--manifest", str(labels), "--models-dir", str(models)]) == 0
    last = json.loads((run / "history.json").read_text())[-1]["val"]["best_threshold"]
    served = UtilityModel("utility-classification", models / "utility-classification", ["CPUExecutionProvider"])
    assert served.contract.threshold == pytest.approx(last) and served.contract.training["best_epoch"]["epoch"] == 4


@pytest.mark.slow
def test_init_starts_the_student_from_a_train_checkpoint(
    photos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--init best.pt: trunk, utility head and quality embedding carried over; the ImageNet head fresh."""
    from training.train.model import build_model

    start = build_model(False, views=2, aux=3, quality=True)
    init = tmp_path / "best.pt"
    torch.save({"model": start.state_dict()}, init)
    run = tmp_path / "run"
    argv = [str(photos), "--teacher", str(TEACHER), "--output-dir", str(run), "--size", "32", "--batch-size", "2"]
    argv += ["--val-photos", "1", "--eval-every", "1", "--workers", "0", "--test-fraction", "0", "--bf16", "off"]
    with caplog.at_level("INFO", logger="training.train.model"):
        assert cli.main([*argv, "--steps", "1", "--init", str(init)]) == 0
    assert "fresh (other layout): aux.bias, aux.weight" in caplog.text
    full = torch.load(run / "checkpoint.pt", weights_only=False)["model_full"]
    moved = (full["quality.0.weight"] - start.state_dict()["quality.0.weight"]).abs().max()
    assert moved < 0.01  # one small AdamW step from the init, not a fresh draw
    with pytest.raises(UsageError, match="--init"):
        options.parse([str(photos), "--init", str(tmp_path / "missing.pt")])


@pytest.mark.slow
def test_labelled_validation_photos_are_held_out_and_select_the_checkpoint(photos: Path, tmp_path: Path) -> None:
    """--val-labels: the labelled photos are never views, every labelled row is scored against its label,
    and best.pt is chosen on label AUROC; a resume without the flag keeps it (and its cached rows). With
    --ema the weights' moving average is what is scored and exported."""
    run = tmp_path / "run"
    argv = [str(photos), "--teacher", str(TEACHER), "--output-dir", str(run), "--size", "32", "--batch-size", "2"]
    held = tmp_path / "held-out"
    assert cli.main([*argv, "--val-photos", "2", "--test-fraction", "0", "--link-val-photos", str(held)]) == 0
    names = sorted(p.name for p in held.iterdir())
    assert len(names) == 2 and all((held / n).resolve() == (photos / n).resolve() for n in names)
    assert not run.exists()
    labels = make_manifest(tmp_path / "labels")  # as 'image-utility label HELD' would: rows of those photos
    df = pd.read_csv(labels / "manifest.csv")
    df = df[(df["source"] + ".jpg").isin(names)].assign(source=lambda d: d["source"] + ".jpg")
    df.to_csv(labels / "manifest.csv", index=False)
    argv += ["--val-labels", str(labels), "--eval-every", "1", "--workers", "0", "--test-fraction", "0"]
    assert cli.main([*argv, "--bf16", "off", "--steps", "2", "--max-steps", "1", "--ema", "0.5"]) == 0
    assert cli.main(["--output-dir", str(run), "--resume", "auto", "--workers", "0"]) == 0
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        scored = h["val"]["labels"]
        assert scored["n"] == int(df["label"].notna().sum()) and scored["n_useful"] == int(df["label"].sum())
        assert set(scored["within_level"]) <= {"4", "5", "6"} and 0 <= scored["auroc_jpeg"] <= 1
    best = torch.load(run / "best.pt", weights_only=False)
    assert best["best"]["on"] == "val (labels)"
    assert best["best"]["value"] == max(h["val"]["labels"]["auroc"] for h in history)
    assert best["data"]["sources"] == {"train": len(PHOTOS) - 2, "val": 2}
    assert best["data"]["val_sources"] == names
    assert best["data"]["splits"]["val"]["total"] == len(df)
    full = torch.load(run / "checkpoint.pt", weights_only=False)
    exported = last_step(full)["model"]
    assert exported and all(torch.equal(w, full["model_ema"][k]) for k, w in exported.items())
    assert full["ema_updates"] == 2  # one a step, counted across the resume (the warm-up reads it)
    assert not all(torch.equal(w, full["model_full"][k]) for k, w in exported.items())
    # exported with only those photos' labels (all of them 'val'): int8 calibrates on their images
    df.assign(split="train").to_csv(labels / "manifest.csv", index=False)
    argv = [str(run), "--manifest", str(labels), "--models-dir", str(tmp_path / "models"), "--int8"]
    assert export.main([*argv, "--calib-images", "4"]) == 0
    assert (tmp_path / "models" / "utility-classification" / "1" / "model.onnx").is_file()
