"""Detection mAP (pycocotools) and the replace-by-pristine filter on hand-made boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import RED, image_bytes

from training.evaluate.detection import coco_map, intra_task_detection

pytest.importorskip("pycocotools")
CATS = [{"id": 1, "name": "person"}]


def gt_with_one_box() -> dict:
    image = {"id": 0, "width": 64, "height": 48, "file_name": "a.jpg"}
    ann = {"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}
    return {"images": [image], "annotations": [ann], "categories": CATS}


@pytest.mark.parametrize(
    ("bbox", "expected"),
    [
        pytest.param([10, 10, 20, 20], 1.0, id="exact"),
        pytest.param([40, 30, 20, 15], 0.0, id="miss"),
    ],
)
def test_coco_map_hand_cases(bbox: list[float], expected: float) -> None:
    det = [{"image_id": 0, "category_id": 1, "bbox": bbox, "score": 0.9}]
    assert coco_map(gt_with_one_box(), det)["map"] == pytest.approx(expected)
    assert coco_map(gt_with_one_box(), [])["map"] == 0.0


def test_filter_replaces_non_useful_by_pristine(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "d").mkdir()
    (tmp_path / "p" / "a.jpg").write_bytes(image_bytes(RED, size=(64, 48)))
    (tmp_path / "d" / "a.jpg").write_bytes(image_bytes((0, 0, 0), size=(64, 48)))
    coco = {"images": [{"id": 7, "width": 64, "height": 48, "file_name": "a.jpg"}], "categories": CATS,
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400,
                             "iscrowd": 0}]}  # fmt: skip
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    rows = pd.DataFrame([{"source": "a.jpg", "path": str(tmp_path / "d" / "a.jpg"), "distortion": "jpeg", "level": 1,
                          "pristine": str(tmp_path / "p" / "a.jpg")}])  # fmt: skip

    def detector(images: list[np.ndarray]) -> list:  # finds the person only in the (red) pristine image
        return [[((10, 10, 30, 30), "person", 0.9)] if im[..., 0].mean() > 100 else [] for im in images]

    filters = {"keeps": np.array([0.9]), "replaces": np.array([0.1])}
    res = intra_task_detection(rows, tmp_path / "ann.json", detector, "toy", ["person"], filters, 0.5)
    assert res["unfiltered"]["map"] == 0.0
    assert res["all_pristine"]["map"] == pytest.approx(1.0)
    assert res["filters"]["keeps"]["map"] == 0.0
    assert res["filters"]["replaces"]["map"] == pytest.approx(1.0)
    assert res["filters"]["replaces"]["replaced"] == 1.0
