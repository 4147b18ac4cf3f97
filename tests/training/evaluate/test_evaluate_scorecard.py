"""The predictor's scorecard (training/evaluate/scorecard.py) on a real tiny model and real JPEG files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from support import BLUE, RED, image_bytes, make_tiny_model

from training.evaluate import scorecard


def make_labels(out: Path, split: str, extra: tuple[tuple[str, int], ...] = ()) -> Path:
    """Red photos useful, blue ones not (what the tiny model reads), as pristine, q90 and JPEG rows."""
    rows = []
    for k, colour in enumerate(["red", "red", "red", "blue"]):
        rgb = RED if colour == "red" else BLUE
        for distortion, level in [("pristine", 1), ("jpeg-hq", 2), ("jpeg", 5), *extra]:
            rel = f"images/{distortion}/{level}/{k}.jpg"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(image_bytes(rgb, (48, 48)))
            useful = colour == "red" or distortion == "pristine"
            rows.append(
                {
                    "source": f"{k}.jpg",
                    "image": rel,
                    "distortion": distortion,
                    "level": level,
                    "split": split,
                    "label": int(useful),
                }
            )
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    return out


def test_scorecard_measures_each_collection_through_the_engine(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "models")
    seen = make_labels(tmp_path / "seen", "test")
    unseen = make_labels(tmp_path / "unseen", "train")  # all rows count when a collection is unseen
    out = tmp_path / "card"
    argv = [str(seen), "--unseen", str(unseen), "--model", str(model), "--out", str(out)]
    assert scorecard.main(argv) == 0
    card = json.loads((out / "scorecard.json").read_text())
    assert card["threshold"] == 0.5 and set(card["collections"]) == {"seen", "unseen"}
    for c in card["collections"].values():
        assert c["rows"] == 12 and c["sources"] == 4
        assert c["pristine"] == {"n": 4, "useful": 0.75} and c["quality_90"] == {"n": 4, "useful": 0.75}
        assert c["at_threshold"]["confusion"] == [[2, 0], [1, 9]]  # the blue pristine photo is missed
    assert card["collections"]["unseen"]["split"] == "all"
    assert "| seen | test | 4 |" in (out / "scorecard.md").read_text()
    assert len(pd.read_csv(out / "scores.csv.gz")) == 24
    assert card["collections"]["seen"]["jpeg_9_levels"]["n"] == 4


def test_scorecard_needs_a_model(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        scorecard.main([str(tmp_path)])


def test_a_model_reading_the_jpeg_header_is_scored_again_without_it(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "models", quality_map=True)
    seen = make_labels(tmp_path / "seen", "test")
    again = make_labels(tmp_path / "other" / "seen", "test")  # the same photos labelled apart
    out = tmp_path / "card"
    assert scorecard.main([str(seen), str(again), "--model", str(model), "--out", str(out)]) == 0
    card = json.loads((out / "scorecard.json").read_text())
    assert set(card["collections"]) == {"seen", "seen (other)"}
    hidden = card["collections"]["seen"]["header_hidden"]
    assert hidden["at_threshold"] == card["collections"]["seen"]["at_threshold"]  # this model ignores the plane
    assert "sent as PNG" in (out / "scorecard.md").read_text()
    assert "p_useful_as_png" in pd.read_csv(out / "scores.csv.gz").columns


def test_one_pass_is_scored_against_several_label_columns(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "models")
    seen = make_labels(tmp_path / "seen", "test")
    df = pd.read_csv(seen / "manifest.csv")
    df["net-a.u"], df["net-b.u"] = df["label"], 1 - df["label"]  # b disagrees with a on every row
    df.to_csv(seen / "manifest.csv", index=False)
    out = tmp_path / "card"
    argv = [str(seen), "--model", str(model), "--out", str(out), "--label-column", "net-a.u"]
    assert scorecard.main([*argv, "--label-column", "net-b.u", "--label-column", "net-a.u+net-b.u"]) == 0
    card = json.loads((out / "scorecard.json").read_text())
    assert card["label_column"] == "net-a.u" and set(card["by_label"]) == {"net-a.u", "net-b.u", "net-a.u+net-b.u"}
    a, b = card["by_label"]["net-a.u"]["seen"], card["by_label"]["net-b.u"]["seen"]
    assert a["at_threshold"]["confusion"] == [[2, 0], [1, 9]]
    assert b["at_threshold"]["confusion"] == [[1, 9], [2, 0]]  # the same answers against the flipped labels
    assert card["by_label"]["net-a.u+net-b.u"]["seen"]["at_threshold"]["n"] == 0  # no row where they agree
    text = (out / "scorecard.md").read_text()
    assert text.count("| collection |") == 3 and "Labels `net-b.u`" in text


def test_distortions_the_header_does_not_reveal_get_a_table_of_their_own(tmp_path: Path) -> None:
    """jpeg-reencode and blur rows: AUROC, balanced accuracy, and how often called useful against labelled."""
    model = make_tiny_model(tmp_path / "models")
    seen = make_labels(tmp_path / "seen", "test", extra=(("jpeg-reencode", 9), ("blur", 4)))
    out = tmp_path / "card"
    assert scorecard.main([str(seen), "--model", str(model), "--out", str(out)]) == 0
    card = json.loads((out / "scorecard.json").read_text())
    beyond = card["collections"]["seen"]["beyond_jpeg"]
    assert set(beyond) == {"blur", "jpeg-reencode"}
    assert beyond["jpeg-reencode"]["n"] == 4 and beyond["jpeg-reencode"]["n_useful"] == 3
    assert card["collections"]["seen"]["jpeg_9_levels"]["n"] == 4  # re-encoded rows are not among the 9 levels
    md = (out / "scorecard.md").read_text()
    assert "| seen | jpeg-reencode | 4 | 1.000 | 100.0 % | 75.0 % / 75.0 % |" in md
