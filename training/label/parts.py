"""Label one source: distort it, run every labeler, write its images and its part file.

Every file is written atomically (a hidden temporary file, then ``os.replace``), and a source's
part file is written last, after its images: a part on disk means the source is complete. A run
killed half-way leaves at most hidden temporaries, which are ignored and later removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.files import write_atomic
from training.images import decode_rgb
from training.label.distortions import PRISTINE, distort, get_distortion, levels_of
from training.label.groundtruth import CocoInstances, GroundTruth, ImagenetWnid
from training.label.measure import Facts, classification_facts, detection_facts
from training.labelers.base import CLASSIFICATION, Labeler
from training.utility import Box, UtilityRule

PART_VERSION = 1


@dataclass(frozen=True)
class Job:
    images_dir: Path
    out_dir: Path
    task: str
    distortions: tuple[str, ...]
    levels: tuple[int, ...]
    seed: int
    rule: UtilityRule
    truth: GroundTruth


def part_path(out_dir: Path, source: str) -> Path:
    return out_dir / "parts" / (source.replace("/", "__") + ".json")


def image_relpath(source: str, distortion: str, level: int, ext: str) -> str:
    return f"images/{distortion}/{level}/{Path(source).with_suffix('.' + ext).as_posix()}"


def reference_kind(labeler: Labeler, truth: GroundTruth) -> str:
    """'ground-truth' when the ground truth covers the labeler's classes, else 'pristine'."""
    if isinstance(truth, ImagenetWnid) and labeler.task == CLASSIFICATION:
        return "ground-truth"
    if isinstance(truth, CocoInstances) and labeler.task != CLASSIFICATION and _coco_classes(labeler, truth):
        return "ground-truth"
    return "pristine"


def _coco_classes(labeler: Labeler, truth: CocoInstances) -> frozenset[str]:
    return truth.categories if labeler.classes is None else truth.categories & frozenset(labeler.classes)


def _facts(labeler: Labeler, arrays: list[np.ndarray], source: str, job: Job) -> list[Facts]:
    # the pristine row is the pristine array itself: run each distinct array once
    distinct = list({id(a): a for a in arrays}.values())
    by_id = dict(zip((id(a) for a in distinct), labeler.predict(distinct), strict=True))
    outputs = [by_id[id(a)] for a in arrays]
    use_truth = reference_kind(labeler, job.truth) == "ground-truth"
    if labeler.task == CLASSIFICATION:
        cls = job.truth.class_of(source) if use_truth and isinstance(job.truth, ImagenetWnid) else None
        return classification_facts(outputs[0], outputs[1:], cls)
    objects: list[tuple[Box, str]] | None = None
    if use_truth and isinstance(job.truth, CocoInstances):
        objects = job.truth.objects_of(source, _coco_classes(labeler, job.truth))
    return detection_facts(outputs[0], outputs[1:], objects, job.rule)


def label_source(source: str, labelers: list[Labeler], job: Job) -> dict[str, Any]:
    """Distort, label and write one source; returns the part that was written."""
    original = (job.images_dir / source).read_bytes()
    pristine = decode_rgb(original)
    versions = []
    for name in job.distortions:
        for level in levels_of(name, job.levels):
            if name == PRISTINE:
                data, ext = original, Path(source).suffix.lstrip(".")
            else:
                data, ext = distort(pristine, name, level, job.seed, source)
            versions.append((name, level, data, image_relpath(source, name, level, ext)))
    reference = np.asarray(pristine)
    arrays = [reference] + [reference if v[0] == PRISTINE else np.asarray(decode_rgb(v[2])) for v in versions]
    facts = {lab.name: _facts(lab, arrays, source, job) for lab in labelers}
    rows = [
        {
            "image": rel,
            "distortion": name,
            "level": level,
            "param": get_distortion(name).value(level),
            "labelers": {lab: facts[lab][k] for lab in facts},
        }
        for k, (name, level, _, rel) in enumerate(versions)
    ]
    for _, _, data, rel in versions:
        write_atomic(job.out_dir / rel, data)
    part = {"version": PART_VERSION, "source": source, "size": list(pristine.size), "rows": rows}
    write_atomic(part_path(job.out_dir, source), json.dumps(part, sort_keys=True), sync=True)
    return part


def read_part(out_dir: Path, source: str) -> dict[str, Any] | None:
    path = part_path(out_dir, source)
    if not path.is_file():
        return None
    return json.loads(path.read_text())
