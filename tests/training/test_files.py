"""Atomic writes and their temporaries (training/files.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from training.files import remove_stale_temporaries, temporary_beside, write_atomic


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
    write_atomic(tmp_path / "x" / "f.txt", "done")
    assert (tmp_path / "x" / "f.txt").read_text() == "done"
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["f.txt"]
