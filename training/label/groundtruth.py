"""Ground truth for the reference decisions: ImageNet wnids in file names, or COCO instances JSON.

Without ground truth the network's own decision on the pristine image is the reference (the
paper's full-reference assumption).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from training.label.imagenet_wnids import WNID_INDEX
from training.utility import Box

_WNID = re.compile(r"n\d{8}")


class GroundTruthError(ValueError):
    """Ground truth is missing for a source or cannot be read."""


@dataclass(frozen=True)
class ImagenetWnid:
    """The class index of the last ImageNet wnid in a source's path: ``n01440764_tench.JPEG`` and the
    class-folder layout ``n01440764/ILSVRC2012_val_00000293.JPEG`` both work."""

    kind: str = "imagenet-wnid"

    def class_of(self, source: str) -> int:
        for match in reversed(list(_WNID.finditer(source))):
            if match.group(0) in WNID_INDEX:
                return WNID_INDEX[match.group(0)]
        raise GroundTruthError(f"{source}: no ImageNet-1k wnid (n########) in its path")


@dataclass(frozen=True)
class CocoInstances:
    """Boxes and category names per image file, from a COCO instances JSON (crowd boxes skipped)."""

    path: Path
    objects: dict[str, list[tuple[Box, str]]] = field(default_factory=dict)
    categories: frozenset[str] = frozenset()
    kind: str = "coco"

    @classmethod
    def load(cls, path: Path) -> CocoInstances:
        try:
            data = json.loads(Path(path).read_text())
            names = {c["id"]: c["name"] for c in data["categories"]}
            files = {im["id"]: im["file_name"] for im in data["images"]}
        except (OSError, ValueError, KeyError) as exc:
            raise GroundTruthError(f"cannot read COCO instances from {path}: {exc}") from exc
        objects: dict[str, list[tuple[Box, str]]] = defaultdict(list)
        for ann in data.get("annotations", []):
            if ann.get("iscrowd"):
                continue
            x, y, w, h = ann["bbox"]
            objects[files[ann["image_id"]]].append(((x, y, x + w, y + h), names[ann["category_id"]]))
        known = {name: objects.get(name, []) for name in files.values()}
        return cls(Path(path), known, frozenset(names.values()))

    def objects_of(self, source: str, classes: frozenset[str]) -> list[tuple[Box, str]]:
        name = Path(source).name
        if name not in self.objects:
            raise GroundTruthError(f"{source}: not among the images of {self.path}")
        return [(box, label) for box, label in self.objects[name] if label in classes]


GroundTruth = ImagenetWnid | CocoInstances | None


def load_ground_truth(spec: str | None) -> GroundTruth:
    """``None``, ``imagenet-wnid`` or ``coco:PATH``."""
    if spec is None or spec == "none":
        return None
    if spec == "imagenet-wnid":
        return ImagenetWnid()
    if spec.startswith("coco:"):
        return CocoInstances.load(Path(spec.removeprefix("coco:")))
    raise GroundTruthError(f"--ground-truth must be imagenet-wnid or coco:PATH, got {spec!r}")
