"""`image-utility score`: offline scoring of files and folders with the service's engine."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from support import BLUE, RED, SLIGHTLY_BLUE, image_bytes, make_settings, make_tiny_model, serve

from app import cli, score

CPU = ["--providers", "CPUExecutionProvider", "--no-progress"]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder tree: red (useful) and blue (non-useful) images, and files that are not images."""
    root = tmp_path / "images"
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "red.jpg").write_bytes(image_bytes(RED))
    (root / "nested" / "blue.png").write_bytes(image_bytes(BLUE, fmt="PNG"))
    (root / "nested" / "deeper" / "red.webp").write_bytes(image_bytes(RED, fmt="WEBP"))
    (root / "notes.txt").write_text("not an image")
    (root / "nested" / "cut.jpg").write_bytes(image_bytes(RED, size=(400, 300))[:700])
    (root / ".DS_Store").write_bytes(b"\x00\x01")
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_folder_is_scored_recursively_and_unreadable_files_are_rows(images: Path, models_dir: Path, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    assert score.main([str(images), "--models-dir", str(models_dir), "--out", str(out), *CPU]) == 0
    rows = {Path(r["path"]).relative_to(images).as_posix(): r for r in read_jsonl(out)}
    assert sorted(rows) == ["nested/blue.png", "nested/cut.jpg", "nested/deeper/red.webp", "notes.txt", "red.jpg"]
    assert rows["red.jpg"]["useful"] is True and rows["red.jpg"]["label"] == "useful"
    assert rows["red.jpg"]["p_useful"] > 0.9 and rows["red.jpg"]["error"] is None
    assert rows["nested/deeper/red.webp"]["useful"] is True
    assert rows["nested/blue.png"]["useful"] is False and rows["nested/blue.png"]["confidence"] > 0.9
    assert "truncated" in rows["nested/cut.jpg"]["error"] and rows["nested/cut.jpg"]["useful"] is None
    assert "not a supported image" in rows["notes.txt"]["error"]
    assert {r["model"] for r in rows.values()} == {"tiny"}
    err = capsys.readouterr().err
    assert "2 useful, 1 non-useful, 2 unreadable" in err and "images/s" in err


@pytest.mark.anyio
async def test_same_answer_as_the_service(images: Path, models_dir: Path, tmp_path):
    out = tmp_path / "r.jsonl"
    data = image_bytes((120, 100, 100))  # p_useful strictly between 0 and 1
    (images / "pinkish.jpg").write_bytes(data)
    assert score.main([str(images / "pinkish.jpg"), "--models-dir", str(models_dir), "--out", str(out), *CPU]) == 0
    offline = read_jsonl(out)[0]
    async with serve(make_settings(models_dir)) as c:
        served = (await c.post("/utility", content=data, headers={"content-type": "image/jpeg"})).json()
    assert 0.5 < offline["p_useful"] < 0.999
    assert offline["p_useful"] == pytest.approx(served["p_useful"], abs=1e-6)


def test_threshold_defaults_to_the_models(tmp_path: Path):
    make_tiny_model(tmp_path / "models", "lenient", gain=1.0, threshold=0.3)
    image = tmp_path / "a.jpg"
    image.write_bytes(image_bytes(SLIGHTLY_BLUE))  # p_useful about 0.4
    args = [str(image), "--models-dir", str(tmp_path / "models"), *CPU]
    assert score.main([*args, "--out", str(tmp_path / "default.jsonl")]) == 0
    assert score.main([*args, "--threshold", "0.5", "--out", str(tmp_path / "strict.jsonl")]) == 0
    default, strict = read_jsonl(tmp_path / "default.jsonl")[0], read_jsonl(tmp_path / "strict.jsonl")[0]
    assert (default["useful"], default["threshold"]) == (True, 0.3)
    assert (strict["useful"], strict["threshold"]) == (False, 0.5)


def test_many_files_in_batches_keep_their_order_csv(tmp_path: Path, models_dir: Path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(37):
        (folder / f"{i:03d}.jpg").write_bytes(image_bytes(RED if i % 3 else BLUE, size=(40 + i, 30)))
    (folder / "010.jpg").write_bytes(b"broken")
    out = tmp_path / "r.csv"
    args = [str(folder), "--models-dir", str(models_dir), "--out", str(out), "--batch-size", "4", "--workers", "2"]
    assert score.main([*args, "--threshold", "0.5", *CPU]) == 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["path"]).name for r in rows] == [f"{i:03d}.jpg" for i in range(37)]
    assert rows[10]["error"] and rows[10]["useful"] == ""
    assert [r["useful"] for r in rows if not r["error"]] == [str(bool(i % 3)).lower() for i in range(37) if i != 10]


def test_rows_go_to_stdout_without_out_and_through_the_console_script(images: Path, models_dir: Path, capsys):
    assert cli.main(["score", str(images / "red.jpg"), "--models-dir", str(models_dir), *CPU]) == 0
    captured = capsys.readouterr()
    (row,) = [json.loads(line) for line in captured.out.splitlines()]
    assert row["useful"] is True and row["path"].endswith("red.jpg")
    assert "1 useful, 0 non-useful, 0 unreadable" in captured.err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param([], "no PATH given", id="no-paths"),
        pytest.param(["{images}/missing.jpg"], "no such file", id="missing-path"),
        pytest.param(["{images}", "--model", "nope"], "model 'nope' not found", id="unknown-model"),
        pytest.param(["{images}", "--threshold", "1.5"], "--threshold must be between 0 and 1", id="threshold-range"),
        pytest.param(["{images}", "--threshold", "high"], "invalid float value", id="threshold-type"),
        pytest.param(["{images}", "--out", "{images}/r.txt"], "--out must end in .jsonl or .csv", id="out-ext"),
        pytest.param(["{images}", "--out", "{images}/no/dir/r.csv"], "does not exist", id="out-dir"),
        pytest.param(["{images}", "--providers", "GPUMagic"], "unknown execution providers", id="provider"),
        pytest.param(["{images}", "--models-dir", "{images}"], "no model folders", id="no-models"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(args, needle, images: Path, models_dir: Path, capsys):
    argv = [a.format(images=images) for a in args]
    if "--models-dir" not in argv:
        argv += ["--models-dir", str(models_dir)]
    assert score.main([*argv, "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert needle in captured.err and captured.out == ""
