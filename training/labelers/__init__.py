"""Labelers by name: ``build_labeler("efficientnet-lite0", device="cpu")``.

Each entry knows its task and how to build itself; weights are never downloaded unless
``allow_download`` is set, and a missing file raises :class:`WeightsNotFoundError` naming it.
Importing this module imports neither torch nor OpenCV: each labeler imports what it needs when built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from training.labelers import offline  # numpy only: OpenCV and MTCNN are imported when built
from training.labelers.base import CLASSIFICATION, DETECTION, Detection, Labeler, WeightsNotFoundError

# The paper's labelling networks, then its generalisation networks (section V-B).
TORCHVISION_CLASSIFIERS = ("inception_v3", "vgg19", "densenet121", "alexnet", "resnext50_32x4d", "efficientnet_b7")
LITE_CLASSIFIERS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
TORCHVISION_DETECTORS = (
    "fasterrcnn_resnet50_fpn",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
    "maskrcnn_resnet50_fpn",
    "retinanet_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
)
OFFLINE_DETECTORS = ("hog-people", "haar-face", "mtcnn-face")

__all__ = ["LABELERS", "Detection", "Labeler", "LabelerEntry", "WeightsNotFoundError", "build_labeler", "names"]


@dataclass(frozen=True)
class LabelerEntry:
    name: str
    task: str
    source: str  # where its weights come from, for --list and the docs
    build: Callable[[str, bool, int], Labeler]  # (device, allow_download, batch_size)


def _lazy(module: str, builder: str, name: str) -> Callable[[str, bool, int], Labeler]:
    """A builder that imports ``training.labelers.<module>`` (torch) only when the labeler is built."""

    def build(device: str, allow_download: bool, batch_size: int) -> Labeler:
        make = getattr(importlib.import_module(f"training.labelers.{module}"), builder)
        return make(name, device, allow_download, batch_size)

    return build


def _offline(kind: str) -> Callable[[str, bool, int], Labeler]:
    def build(device: str, allow_download: bool, batch_size: int) -> Labeler:
        if kind == "mtcnn-face":
            return offline.MtcnnFace(device=device, batch_size=batch_size)
        return {"hog-people": offline.HogPeople, "haar-face": offline.HaarFace}[kind](batch_size=batch_size)

    return build


def _registry() -> dict[str, LabelerEntry]:
    hub = "torch hub cache"
    entries = [
        LabelerEntry(n, CLASSIFICATION, hub, _lazy("classifiers", "build_torchvision", n))
        for n in TORCHVISION_CLASSIFIERS
    ]
    entries += [
        LabelerEntry(n, CLASSIFICATION, "PyPI wheel", _lazy("classifiers", "build_lite", n)) for n in LITE_CLASSIFIERS
    ]
    entries += [
        LabelerEntry(n, DETECTION, hub, _lazy("detectors", "build_torchvision_detector", n))
        for n in TORCHVISION_DETECTORS
    ]
    sources = {"hog-people": "opencv wheel", "haar-face": "opencv wheel", "mtcnn-face": "facenet-pytorch wheel"}
    entries += [LabelerEntry(n, DETECTION, sources[n], _offline(n)) for n in OFFLINE_DETECTORS]
    return {e.name: e for e in entries}


LABELERS: dict[str, LabelerEntry] = _registry()


def names(task: str | None = None) -> list[str]:
    return [n for n, e in LABELERS.items() if task is None or e.task == task]


def build_labeler(name: str, device: str = "cpu", allow_download: bool = False, batch_size: int = 16) -> Labeler:
    if name not in LABELERS:
        raise KeyError(f"unknown labeler {name!r}; known: {', '.join(LABELERS)}")
    return LABELERS[name].build(device, allow_download, batch_size)
