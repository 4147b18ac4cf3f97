"""Provenance of cards and reports (training/provenance.py): the commit, and no machine's absolute paths."""

from __future__ import annotations

from pathlib import Path

from training.provenance import REPO, git_commit, portable_paths


def test_cards_and_reports_name_no_absolute_path_of_this_machine() -> None:
    text = (
        f"labels {REPO.parent}/shared/data/coco128/images, run {REPO}/runs/cls/best.pt, "
        f"scratch {tmp_root()}/state/labels/imagen; routes /utility/batch and https://host/a/b/c stay"
    )
    assert portable_paths(text) == (
        "labels ../shared/data/coco128/images, run runs/cls/best.pt, "
        "scratch SCRATCH/labels/imagen; routes /utility/batch and https://host/a/b/c stay"
    )


def tmp_root() -> str:
    """An absolute folder that exists here, as a scratch root does on a build machine."""
    return str(Path(__file__).resolve().parents[3])


def test_the_commit_is_this_checkout_s_and_unknown_elsewhere(tmp_path: Path) -> None:
    commit = git_commit()
    assert len(commit.removesuffix("+dirty")) == 40
    assert git_commit(tmp_path) == "unknown"
