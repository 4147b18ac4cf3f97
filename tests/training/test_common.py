"""Shared training helpers (training/common.py): atomic writes and their temporaries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from training.common import atomic_write_text, remove_stale_temporaries, temporary_beside


def dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_only_this_hosts_dead_writers_are_cleaned_up(tmp_path: Path) -> None:
    mine = temporary_beside(tmp_path / "a.json")
    host = mine.name.rsplit(".", 1)[-1].rpartition("_")[0]
    assert mine.name == f".a.json.tmp.{host}_{os.getpid()}" and host
    dead = dead_pid()
    stale = tmp_path / f".b.json.tmp.{host}_{dead}"
    legacy = tmp_path / f".c.json.tmp.{dead}"  # named before hosts were: this host's
    other_host = tmp_path / f".d.json.tmp.other-node_{dead}"  # another machine on a shared volume
    for f in (mine, stale, legacy, other_host):
        f.write_text("partial")
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other_host.name])


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "x" / "f.txt", "done")
    assert (tmp_path / "x" / "f.txt").read_text() == "done"
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["f.txt"]


def test_cards_and_reports_name_no_absolute_path_of_this_machine() -> None:
    from training.common import _REPO, portable_paths

    text = (
        f"labels {_REPO.parent}/shared/data/coco128/images, run {_REPO}/runs/cls/best.pt, "
        f"scratch {tmp_root()}/state/labels/imagen; routes /utility/batch and https://host/a/b/c stay"
    )
    assert portable_paths(text) == (
        "labels ../shared/data/coco128/images, run runs/cls/best.pt, "
        "scratch SCRATCH/labels/imagen; routes /utility/batch and https://host/a/b/c stay"
    )


def tmp_root() -> str:
    """An absolute folder that exists here, as a scratch root does on a build machine."""
    return str(Path(__file__).resolve().parents[3])
