"""The one manifest reader and writer (training/manifest.py), on a tiny real manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from support.training import add_facts, make_manifest

from training.manifest import (
    ManifestError,
    find_labelers,
    label_values,
    read_manifest,
    read_manifests,
    read_split,
    side_files,
    write_manifest,
)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_manifest_drops_unlabelled_rows_and_keeps_side_files(tmp_path: Path, fmt: str) -> None:
    out = make_manifest(tmp_path, fmt)
    df = read_manifest(out)
    assert len(df) == 24 and set(df["label"]) == {0, 1}
    assert Path(df["path"][0]).is_file()
    assert side_files(out)["summary.json"]["rule"].startswith("quality")


def test_folders_of_the_same_name_are_one_collection(tmp_path: Path) -> None:
    a = make_manifest(tmp_path / "jpeg" / "photos")
    b = make_manifest(tmp_path / "other" / "photos")
    joined = read_manifests([a, b, make_manifest(tmp_path / "more")])
    assert set(joined["collection"]) == {"photos", "more"}
    photos = read_manifest(a)["source"].nunique()
    assert joined.loc[joined["collection"] == "photos", "source"].nunique() == photos  # the same photos, not twice
    frame = pd.read_csv(b / "manifest.csv")
    frame["split"] = frame["split"].map({"train": "test", "test": "train"})  # another seed's split
    frame.to_csv(b / "manifest.csv", index=False)
    with pytest.raises(ManifestError, match="different splits"):
        read_manifests([a, b])


def test_several_manifests_join_with_their_collection(tmp_path: Path) -> None:
    labels = add_facts(make_manifest(tmp_path / "facts"))
    other = tmp_path / "other"
    shutil.copytree(labels, other)
    df = read_manifests([labels, other])
    assert sorted(df["collection"].unique()) == sorted([labels.name, "other"])
    assert df["source"].str.startswith(("other/", f"{labels.name}/")).all()
    assert df.groupby("source")["split"].nunique().max() == 1
    assert len(df) == 2 * len(read_manifests([labels]))


def test_the_evaluation_reads_one_split_with_every_row_and_the_pristine_photos(tmp_path: Path) -> None:
    out = add_facts(make_manifest(tmp_path / "labels"))
    (out / "manifest.json").write_text(json.dumps({"images_dir": str(tmp_path / "photos")}))
    m = read_split(out, "test")
    assert set(m.rows["split"]) == {"test"} and m.rows["source"].nunique() == 2
    assert m.rows["pristine"][0] == str(tmp_path / "photos" / m.rows["source"][0])
    assert m.labelers == ["net-a", "net-b", "rule"]  # no labelers named beside it: the column prefixes
    everything = read_split(out, None)
    assert len(everything.rows) == 25 and everything.rows["label"].isna().sum() == 1
    assert len(read_split(out, "test", limit_sources=1).rows["source"].unique()) == 1


def test_labelers_named_beside_the_manifest_come_first() -> None:
    assert find_labelers({"manifest.json": {"labelers": ["b", "a"]}}, ["x.u"]) == ["b", "a"]
    assert find_labelers({"summary.json": {"rule": "r"}}, ["x.u", "x.phi", "label"]) == ["x"]


def test_one_error_for_every_manifest_problem(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no manifest\.parquet or manifest\.csv"):
        read_split(tmp_path)
    (tmp_path / "manifest.csv").write_text("source,image\na,b\n")
    with pytest.raises(ManifestError, match="lacks columns"):
        read_manifest(tmp_path)
    with pytest.raises(ManifestError, match="lacks columns"):
        read_split(tmp_path)


def test_written_manifests_read_back(tmp_path: Path) -> None:
    rows = pd.DataFrame({"source": ["a"], "image": ["images/a.jpg"], "distortion": ["jpeg"], "level": [1],
                         "split": ["train"], "label": [1]})  # fmt: skip
    path = write_manifest(tmp_path, rows, {"labelers": ["n"]})
    assert path == tmp_path / "manifest.csv" and sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.csv",
        "manifest.json",
    ]
    df = read_manifest(tmp_path)
    assert df["path"][0] == str(tmp_path / "images" / "a.jpg") and df["label"][0] == 1
    assert read_split(tmp_path).labelers == ["n"]


def test_a_label_column_of_several_is_their_unanimity() -> None:
    df = pd.DataFrame({"a.u": [1, 0, 1, 0, None], "b.u": [1, 0, 0, None, None]})
    assert label_values(df, "a.u").tolist()[:4] == [1, 0, 1, 0]
    joined = label_values(df, "a.u+b.u")
    assert joined.tolist()[:2] == [1, 0] and joined.iloc[2:].isna().all()  # disagreement or abstention: dropped
