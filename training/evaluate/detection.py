"""Fig. 2(b) / Table IV: mAP of a held-out detector on distorted test images, with and without a utility
filter. As in the paper, images a filter calls non-useful are replaced by their pristine versions."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from training.images import load_rgb
from training.labelers import build_labeler

log = logging.getLogger(__name__)
Detection = tuple[tuple[float, float, float, float], str, float]
Detector = Callable[[Sequence[np.ndarray]], list[list[Detection]]]


def coco_map(gt: dict, dets: list[dict]) -> dict[str, float]:
    """COCO bbox mAP@[.5:.95] and mAP@.5 (pycocotools) of ``dets`` against the ``gt`` dataset dict."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if not dets:
            return {"map": 0.0, "map50": 0.0}
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.catIds = sorted({a["category_id"] for a in gt["annotations"]}) or ev.params.catIds
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map": max(float(ev.stats[0]), 0.0), "map50": max(float(ev.stats[1]), 0.0)}


def _ground_truth(coco: dict, sources: list[str], classes: set[str] | None) -> tuple[dict, dict[str, int]]:
    cats = [c for c in coco["categories"] if classes is None or c["name"] in classes]
    cat_ids = {c["id"] for c in cats}
    by_file = {im["file_name"]: im for im in coco["images"]}
    images, anns = [], []
    for i, src in enumerate(sources):
        im = by_file[Path(src).name]
        images.append({"id": i, "width": im["width"], "height": im["height"], "file_name": src})
        for a in coco["annotations"]:
            if a["image_id"] == im["id"] and a["category_id"] in cat_ids:
                anns.append({**a, "id": len(anns) + 1, "image_id": i})
    return {"images": images, "annotations": anns, "categories": cats}, {c["name"]: c["id"] for c in cats}


def _results(dets: list[list[Detection]], cat_ids: dict[str, int]) -> list[dict]:
    out = []
    for i, image_dets in enumerate(dets):
        for (x0, y0, x1, y1), name, score in image_dets:
            if name in cat_ids:
                bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
                out.append({"image_id": i, "category_id": cat_ids[name], "bbox": bbox, "score": float(score)})
    return out


def intra_task_detection(
    rows: pd.DataFrame,
    annotations: Path,
    detector: Detector,
    detector_name: str,
    classes: Sequence[str] | None,
    filters: dict[str, np.ndarray],
    thr: float,
) -> dict:
    """mAP of ``detector`` on the JPEG test rows: unfiltered, per filter, and all-pristine (upper bound)."""
    coco = json.loads(Path(annotations).read_text())
    jpeg = np.flatnonzero((rows["distortion"] == "jpeg").to_numpy())
    sub = rows.iloc[jpeg]
    sources = list(sub["source"])
    gt, cat_ids = _ground_truth(coco, sources, set(classes) if classes else None)
    distorted = [detector([load_rgb(p)])[0] for p in tqdm(sub["path"], desc=detector_name, unit="img", leave=False)]
    pristine_by_src = {s: detector([load_rgb(p)])[0] for s, p in zip(sub["source"], sub["pristine"], strict=True)}
    pristine = [pristine_by_src[s] for s in sources]
    levels = sorted(sub["level"].unique())
    lv = sub["level"].to_numpy()

    def measure(dets: list[list[Detection]]) -> dict:
        entry = coco_map(gt, _results(dets, cat_ids))
        entry["levels"] = {}
        for level in levels:
            keep = np.flatnonzero(lv == level)
            g = {**gt, "images": [gt["images"][k] for k in keep]}
            ids = {gt["images"][k]["id"] for k in keep}
            g["annotations"] = [a for a in gt["annotations"] if a["image_id"] in ids]
            res = [r for r in _results(dets, cat_ids) if r["image_id"] in ids]
            entry["levels"][str(level)] = coco_map(g, res)["map"]
        return entry

    out: dict = {
        "available": True,
        "network": detector_name,
        "classes": sorted(cat_ids),
        "n": len(sub),
        "n_objects": len(gt["annotations"]),
        "threshold": thr,
    }
    out["unfiltered"] = measure(distorted)
    out["all_pristine"] = coco_map(gt, _results(pristine, cat_ids))
    out["filters"] = {}
    for name, p in filters.items():
        useful = p[jpeg] >= thr
        dets = [d if u else q for d, q, u in zip(distorted, pristine, useful, strict=True)]
        entry = measure(dets)
        entry["replaced"] = float((~useful).mean())
        out["filters"][name] = entry
    return out


def build_detector(name: str, device: str = "cpu") -> tuple[Detector, list[str] | None]:
    """A detector from the labels package's registry (``training.labelers``) and the classes it reports."""
    labeler = build_labeler(name, device=device, allow_download=False, batch_size=1)
    return labeler.predict, (list(labeler.classes) if labeler.classes else None)
