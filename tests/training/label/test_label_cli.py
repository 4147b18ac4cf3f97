"""``image-utility label`` end to end: real labelers on scikit-image photos, real JPEG bytes,
shards and merge, and a kill -9 half-way followed by a resume."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from skimage import data

from app.cli import main as cli
from training.label.rows import manifest_row
from training.labelers import build_labeler

ROOT = Path(__file__).resolve().parents[3]
SINGLE_FILES = ("manifest.csv", "manifest.json", "summary.md", "summary.json", "run.json", "sources.tsv")
# wnid file names: espresso (lite0 gets it right), tabby (lite0 says tiger cat), space shuttle.
CLASSIFICATION_PHOTOS = {
    "n07920052_coffee.png": data.coffee,
    "n02123045_chelsea.jpg": data.chelsea,
    "n04266014_rocket.jpg": data.rocket,
}
DETECTION_PHOTOS = {
    "astronaut.png": data.astronaut,
    "rocket.jpg": data.rocket,
    "motorcycle.jpg": lambda: data.stereo_motorcycle()[0],
    "coffee.jpg": data.coffee,
    "chelsea.jpg": data.chelsea,
}
CLASSIFICATION_ARGS = [
    "--task", "classification", "--labelers", "efficientnet-lite0", "--ground-truth", "imagenet-wnid",
    "--levels", "1,5,9", "--threads", "1",
]  # fmt: skip


def write_photos(folder: Path, photos: dict, width: int) -> Path:
    folder.mkdir(parents=True)
    for name, make in photos.items():
        img = Image.fromarray(make())
        img.resize((width, round(img.height * width / img.width)), Image.Resampling.BILINEAR).save(folder / name)
    return folder


@pytest.fixture(scope="module")
def classified(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cls")
    images = write_photos(root / "photos", CLASSIFICATION_PHOTOS, 320)
    (images / "notes.txt").write_text("not an image")
    assert cli(["label", str(images), "--out", str(root / "out"), *CLASSIFICATION_ARGS]) == 0
    return root


def read_manifest(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "manifest.csv", keep_default_na=True)


def test_manifest_contract(classified: Path) -> None:
    out = classified / "out"
    df = read_manifest(out)
    assert len(df) == 3 * 3
    assert {"source", "image", "distortion", "level", "split", "label"} <= set(df.columns)
    assert set(df["label"].dropna()) <= {0, 1}
    assert set(df["split"]) <= {"train", "test"}
    assert df.groupby("source")["split"].nunique().max() == 1
    for rel in df["image"]:
        blob = (out / rel).read_bytes()
        assert blob[:2] == b"\xff\xd8"  # the stored JPEG is the encoder's output
    meta = json.loads((out / "manifest.json").read_text())
    assert meta["rule"]["name"] == "relative" and meta["rule"]["t_high"] == 0.9
    assert (out / "summary.md").read_text().startswith("# Labels")


def test_ground_truth_decides_which_sources_count(classified: Path) -> None:
    df = read_manifest(classified / "out").drop_duplicates("source").set_index("source")
    lab = build_labeler("efficientnet-lite0")
    for source in CLASSIFICATION_PHOTOS:
        probs = lab.predict([__import__("numpy").asarray(Image.open(classified / "photos" / source).convert("RGB"))])[0]
        ref = int(df.loc[source, "efficientnet-lite0.ref"])
        assert bool(df.loc[source, "efficientnet-lite0.valid"]) == (int(probs.argmax()) == ref)
    assert df.loc["n07920052_coffee.png", "efficientnet-lite0.ref"] == 967


def test_labels_recompute_from_the_manifest_alone(classified: Path) -> None:
    out = classified / "out"
    df = read_manifest(out)
    settings = json.loads((out / "run.json").read_text())
    name = "efficientnet-lite0"
    for _, r in df.iterrows():
        facts = {k: r[f"{name}.{k}"] for k in ("ref", "pred", "phi", "phi_ref", "valid")}
        row = {"image": r["image"], "distortion": r["distortion"], "level": r["level"], "param": r["param"]}
        again = manifest_row(r["source"], r["split"], {**row, "labelers": {name: facts}}, [name], settings)
        assert (again["label"] is None and pd.isna(r["label"])) or again["label"] == r["label"]
        paper = {**settings, "rule": {**settings["rule"], "name": "paper"}}
        again = manifest_row(r["source"], r["split"], {**row, "labelers": {name: facts}}, [name], paper)
        assert (again["label"] is None and pd.isna(r["label_paper"])) or again["label"] == r["label_paper"]


def test_rerun_with_other_settings_is_refused(classified: Path) -> None:
    args = ["label", str(classified / "photos"), "--out", str(classified / "out"), "--levels", "1,2"]
    assert cli(args) == 2


def test_missing_weights_fail_clearly(classified: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    args = ["label", str(classified / "photos"), "--out", str(tmp_path / "o"), "--labelers", "densenet121"]
    assert cli(args) == 2
    assert str(tmp_path / "th" / "hub" / "checkpoints" / "densenet121-a639ec97.pth") in caplog.text


def test_shards_merge_into_the_same_manifest(classified: Path, tmp_path: Path) -> None:
    photos = str(classified / "photos")
    for i in range(2):
        assert cli(["label", photos, "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2", *CLASSIFICATION_ARGS]) == 0
        assert not (tmp_path / f"s{i}" / "manifest.csv").exists()  # a shard is not the dataset
        assert (tmp_path / f"s{i}" / f"shard-{i}-of-2.csv").is_file()
    only_first = ["label", "merge", str(tmp_path / "s0"), "--out", str(tmp_path / "p")]
    assert cli(only_first) == 2  # half the sources: refused, and no manifest
    assert cli([*only_first, "--partial"]) == 0
    assert not (tmp_path / "p" / "manifest.csv").exists()
    (partial,) = (tmp_path / "p").glob("partial-*-of-*.csv")
    half, whole = pd.read_csv(tmp_path / "s0" / "shard-0-of-2.csv"), read_manifest(classified / "out")
    assert partial.stem == f"partial-{half['source'].nunique()}-of-{whole['source'].nunique()}"
    assert len(pd.read_csv(partial)) == len(half)
    assert cli(["label", "merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m")]) == 0
    pd.testing.assert_frame_equal(read_manifest(tmp_path / "m"), read_manifest(classified / "out"))
    for rel in read_manifest(tmp_path / "m")["image"]:
        assert (tmp_path / "m" / rel).read_bytes() == (classified / "out" / rel).read_bytes()


@pytest.mark.parametrize("shared", [False, True], ids=["a folder per shard", "one shared folder"])
def test_shard_processes_side_by_side_give_a_single_runs_files_byte_for_byte(
    classified: Path, tmp_path: Path, shared: bool
) -> None:
    """Two `image-utility label --shard i/2` processes at once (as an Indexed Job's pods or a job array's
    tasks run), then `label merge`: the same manifest, summary and images as one uninterrupted run."""
    outs = [tmp_path / ("out" if shared else f"shard-{i}") for i in range(2)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    label = [sys.executable, "-m", "app.cli", "label", str(classified / "photos"), *CLASSIFICATION_ARGS]
    logs = [tmp_path / f"shard-{i}.log" for i in range(2)]
    with contextlib.ExitStack() as files:
        procs = [
            subprocess.Popen(
                [*label, "--shard", f"{i}/2", "--out", str(out)], env=env, stderr=files.enter_context(log.open("w"))
            )
            for i, (out, log) in enumerate(zip(outs, logs, strict=True))
        ]
        codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0], [log.read_text() for log in logs]
    assert cli(["label", "merge", *map(str, dict.fromkeys(outs)), "--out", str(tmp_path / "merged")]) == 0
    single = snapshot(classified / "out") | {n: (classified / "out" / n).read_bytes() for n in SINGLE_FILES}
    merged = snapshot(tmp_path / "merged") | {n: (tmp_path / "merged" / n).read_bytes() for n in SINGLE_FILES}
    assert merged == single
    if shared:  # the last shard to finish found every part and wrote the dataset itself
        assert (outs[0] / "manifest.csv").read_bytes() == single["manifest.csv"]


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "images").rglob("*")) if p.is_file()}


def test_kill_9_then_resume_gives_the_same_manifest(tmp_path: Path) -> None:
    images = write_photos(tmp_path / "photos", DETECTION_PHOTOS, 360)
    # COCO ground truth without a person where HOG fires: hog-people (class 'person', in COCO) must
    # use it and count no source; haar-face ('face', not in COCO) uses its pristine decisions.
    coco = {
        "images": [{"id": k, "file_name": n} for k, n in enumerate(DETECTION_PHOTOS)],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 30, 30], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
    }
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    args = [
        "label", str(images), "--task", "detection", "--labelers", "hog-people,haar-face",
        "--ground-truth", f"coco:{tmp_path / 'instances.json'}", "--distortions", "jpeg,noise", "--levels", "1,9",
        "--threads", "1",
    ]  # fmt: skip
    assert cli([*args, "--out", str(tmp_path / "whole")]) == 0

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "app.cli", *args, "--out", str(tmp_path / "killed")]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "killed" / "parts"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(list(parts.glob("*.json"))) < 2:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("*.json")))
    assert 2 <= done < len(DETECTION_PHOTOS), "the run should have been killed half-way"
    assert not (tmp_path / "killed" / "manifest.csv").exists()
    for part in parts.glob("*.json"):
        json.loads(part.read_text())  # every visible part is complete

    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    pd.testing.assert_frame_equal(read_manifest(tmp_path / "killed"), read_manifest(tmp_path / "whole"))
    assert snapshot(tmp_path / "killed") == snapshot(tmp_path / "whole")
    assert not list((tmp_path / "killed").rglob(".*.tmp.*"))

    df = read_manifest(tmp_path / "whole")
    assert set(df["distortion"]) == {"jpeg", "noise"}
    assert not df["hog-people.valid"].any()
    astronaut = df[df["source"] == "astronaut.png"]
    assert astronaut["haar-face.valid"].all() and (astronaut["haar-face.ref"] == "face").all()
    assert (astronaut["n_voters"] == 1).all()


def test_sources_whose_outputs_would_collide_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(data.coffee()).save(folder / "a.jpg")
    Image.fromarray(data.coffee()).save(folder / "a.png")
    assert cli(["label", str(folder), "--out", str(tmp_path / "out"), "--labelers", "efficientnet-lite0"]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_fails_clearly(tmp_path: Path, caplog) -> None:
    folder = write_photos(tmp_path / "photos", {"coffee.jpg": data.coffee}, 64)
    assert cli(["label", str(folder), "--out", str(tmp_path / "out"), "--device", "cuda"]) == 2
    assert "no CUDA device" in caplog.text
