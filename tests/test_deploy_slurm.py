"""docker/slurm: the labelling job array, its merge and the script that submits both. No Slurm here: the
scripts are checked by bash -n and shellcheck, then run with the variables Slurm would set (array tasks 0
and 1 side by side on real photos, then the merge), and the submit script against a stand-in sbatch."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from skimage import data
from support.deploy import DOCKER, ROOT, need_tool, run

from app.cli import main as cli

SLURM = DOCKER / "slurm"
SCRIPTS = sorted(SLURM.iterdir())
# Cheap real labelers (OpenCV, no weights to fetch) and the settings every shard shares.
SETTINGS = "--task detection --labelers hog-people,haar-face --distortions jpeg --levels 1,9"
PHOTOS = {"astronaut.png": data.astronaut, "rocket.jpg": data.rocket, "coffee.jpg": data.coffee}


def env_for(**variables: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CUDA_VISIBLE"))}
    return {**base, "PYTHONPATH": str(ROOT), "IMAGE_UTILITY": f"{sys.executable} -m app.cli", **variables}


def array_task(index: int, count: int, **variables: str) -> dict[str, str]:
    """The variables Slurm sets in task ``index`` of ``sbatch --array=0-<count-1>``."""
    slurm = {"ARRAY_TASK_ID": index, "ARRAY_TASK_MIN": 0, "ARRAY_TASK_MAX": count - 1, "ARRAY_TASK_COUNT": count}
    return env_for(**{f"SLURM_{k}": str(v) for k, v in slurm.items()}, SLURM_CPUS_PER_TASK="1", **variables)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("slurm") / "photos"
    folder.mkdir()
    for name, make in PHOTOS.items():
        img = Image.fromarray(make())
        img.resize((240, round(img.height * 240 / img.width))).save(folder / name)
    return folder


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_pass_shellcheck(script: Path) -> None:
    assert run(["bash", "-n", str(script)]).returncode == 0
    result = run([need_tool("shellcheck", "apt-get install shellcheck"), "-x", str(script)])
    assert result.returncode == 0, result.stdout


def test_array_task_is_requeued_on_preemption_and_asks_for_a_gpu() -> None:
    lines = (SLURM / "label-array.sbatch").read_text().splitlines()
    directives = [line.split()[1] for line in lines if line.startswith("#SBATCH")]
    assert "--requeue" in directives and "--open-mode=append" in directives  # one log across requeues
    assert "--gres=gpu:1" in directives


def test_array_tasks_side_by_side_then_merge_give_a_single_runs_manifest(photos: Path, tmp_path: Path) -> None:
    assert cli(["label", str(photos), *shlex.split(SETTINGS), "--out", str(tmp_path / "single")]) == 0
    labels = tmp_path / "labels"
    common = {"PHOTOS": str(photos), "LABELS": str(labels), "LABEL_ARGS": SETTINGS}
    tasks = [
        subprocess.Popen(["bash", str(SLURM / "label-array.sbatch")], env=array_task(i, 2, **common), cwd=tmp_path)
        for i in range(2)
    ]
    assert [t.wait(timeout=300) for t in tasks] == [0, 0]
    parts = [{p.name for p in (labels / f"shard-{i}" / "parts").iterdir()} for i in range(2)]
    assert parts[0].isdisjoint(parts[1]) and len(parts[0] | parts[1]) == len(PHOTOS)
    requeue_after_a_kill(labels / "shard-0", array_task(0, 2, **common), tmp_path)
    merge = run(["bash", str(SLURM / "label-merge.sbatch")], env=env_for(LABELS=str(labels), SHARDS="2"), timeout=300)
    assert merge.returncode == 0, merge.stderr
    for name in ("manifest.csv", "manifest.json", "summary.md"):
        assert (labels / "merged" / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name
    for image in (tmp_path / "single" / "images").rglob("*.jpg"):
        assert (labels / "merged" / image.relative_to(tmp_path / "single")).read_bytes() == image.read_bytes()


def requeue_after_a_kill(shard: Path, env: dict[str, str], cwd: Path) -> None:
    """Leave the shard as a kill before its last part's rename leaves it (images are written before the part,
    which commits the source), then run the task again as Slurm's requeue does: that source alone is redone."""
    done = sorted((shard / "parts").iterdir())
    done[-1].unlink()
    (shard / "shard-0-of-2.csv").unlink()
    again = run(["bash", str(SLURM / "label-array.sbatch")], env=env, cwd=cwd, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"({len(done)} in this shard), {len(done) - 1} already done" in again.stderr
    assert done[-1].is_file() and (shard / "shard-0-of-2.csv").is_file()


def test_a_partial_array_needs_shards(tmp_path: Path) -> None:
    """--array=3,5 (rerunning two shards of 8) cannot tell N: the task refuses unless SHARDS says it."""
    rerun = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "5"}
    variables = {"PHOTOS": "/p", "LABELS": "/l", "IMAGE_UTILITY": "echo", **rerun, "SLURM_ARRAY_TASK_COUNT": "2"}
    refused = run(["bash", str(SLURM / "label-array.sbatch")], env=env_for(**variables), cwd=tmp_path)
    assert refused.returncode == 2 and "set SHARDS" in refused.stderr
    given = run(["bash", str(SLURM / "label-array.sbatch")], env=env_for(**variables, SHARDS="8"), cwd=tmp_path)
    assert given.returncode == 0, given.stderr
    assert "--shard 5/8 --out /l/shard-5" in given.stdout and "--device cpu" in given.stdout


def test_submit_runs_the_merge_after_every_array_task_succeeded(tmp_path: Path) -> None:
    """A stand-in sbatch records each call (arguments and the variables it would export)."""
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text(
        '#!/bin/bash\necho "$* | $PHOTOS $LABELS $SHARDS" >> "$CALLS"\necho "$((4100 + $(wc -l < "$CALLS")));c1"\n'
    )
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    variables = {"PATH": f"{fake.parent}:{os.environ['PATH']}", "CALLS": str(calls), "PHOTOS": "/p", "LABELS": "/l"}
    result = run(["bash", str(SLURM / "submit-label.sh"), "--partition=gpu"], env=env_for(**variables, SHARDS="3"))
    assert result.returncode == 0, result.stderr
    array, merge = calls.read_text().splitlines()
    assert array == f"--parsable --partition=gpu --array=0-2 {SLURM}/label-array.sbatch | /p /l 3"
    assert merge == f"--parsable --partition=gpu --dependency=afterok:4101 {SLURM}/label-merge.sbatch | /p /l 3"
    assert "job 4101" in result.stdout and "job 4102" in result.stdout
