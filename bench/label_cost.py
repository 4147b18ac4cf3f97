"""What labelling one photo costs on this CPU, and how much of it a GPU would take (docs/scale.md).

    python -m bench.label_cost ../shared/data/imagenet-sample --coco ../shared/data/coco128/images

``end to end``: ``label_source`` (distort, decode, every labeler, write) with the EfficientNet-Lite trio
on real photos, the pristine photo + 9 JPEG levels each. ``forward``: each network alone on a batch of
views, frozen as the labeller freezes it on CPU; the paper's torchvision networks run with random weights
(their cost does not depend on the values, and their weights are not on this machine; the detectors'
post-processing does, a little: seeded). ``CPU part``: what stays on the CPU when the networks run on a
GPU, timed directly. Times are CPU seconds of this process, not wall time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.models import get_model, get_model_weights

from training.images import decode_rgb
from training.label.distortions import distort
from training.label.groundtruth import load_ground_truth
from training.label.parts import Job, label_source
from training.labelers import LABELERS, build_labeler
from training.labelers.classifiers import TorchClassifier, freeze_for_cpu, to_tensor
from training.utility import UtilityRule

LITE = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
PAPER_CLASSIFIERS = ("inception_v3", "vgg19", "densenet121")
PAPER_DETECTORS = ("fasterrcnn_resnet50_fpn", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large")
LEVELS = tuple(range(1, 10))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.label_cost", description=__doc__.splitlines()[0])
    p.add_argument("photos", type=Path, help="a folder of wnid-named ImageNet photos")
    p.add_argument("--coco", type=Path, default=None, help="a folder of COCO photos, for the detectors")
    p.add_argument("--count", type=int, default=8, help="photos timed end to end (after one warm-up)")
    p.add_argument("--classifiers", default=",".join(LITE + PAPER_CLASSIFIERS))
    p.add_argument("--detectors", default=",".join(PAPER_DETECTORS))
    p.add_argument("--threads", type=int, default=1)
    return p


def timed(fn: Callable[[], object], reps: int) -> float:
    """CPU seconds per call (of this process: wall time on a shared machine measures the neighbours), after
    one untimed call."""
    fn()
    start = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - start) / reps


def end_to_end(photos: list[Path], out: Path, labelers: list[TorchClassifier]) -> float:
    """CPU seconds per photo of ``label_source`` with ``labelers``, the pristine photo + 9 JPEG levels."""
    job = Job(photos[0].parent, out, "classification", ("jpeg",), LEVELS, 0, UtilityRule(), load_ground_truth(None))
    label_source(photos[0].name, labelers, job)  # warm-up
    start = time.process_time()
    for photo in photos[1:]:
        label_source(photo.name, labelers, job)
    return (time.process_time() - start) / (len(photos) - 1)


def classifier(name: str, built: dict[str, TorchClassifier]) -> tuple[torch.nn.Module, Callable]:
    """The network and its transform as the labeller builds them on CPU (random weights for torchvision's)."""
    if LABELERS[name].source != "torch hub cache":
        lab = built.get(name) or build_labeler(name)
        return lab.model, lab.transform
    transform = get_model_weights(name).DEFAULT.transforms()
    extra = {"aux_logits": True, "init_weights": False} if name == "inception_v3" else {}
    return freeze_for_cpu(name, get_model(name, weights=None, **extra).eval(), transform.crop_size[0]), transform


@torch.inference_mode()
def classifier_forward(name: str, photo: np.ndarray, built: dict[str, TorchClassifier], batch: int = 10) -> float:
    model, transform = classifier(name, built)
    views = torch.stack([transform(to_tensor(photo)) for _ in range(batch)])
    return timed(lambda: model(views), 2) / batch


@torch.inference_mode()
def detector_forward(name: str, photo: np.ndarray) -> float:
    torch.manual_seed(0)  # random weights: how many boxes reach NMS depends on them
    model = get_model(name, weights=None, weights_backbone=None, num_classes=91).eval()
    view = [to_tensor(photo).float().div_(255.0)]
    return timed(lambda: model(view), 1)


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def report(rows: list[tuple[str, float]]) -> str:
    lines = ["| measure | CPU seconds |", "|---|---|"]
    return "\n".join(lines + [f"| {what} | {seconds:.3f} |" for what, seconds in rows])


def cpu_part(photo: Path, lite: dict[str, TorchClassifier]) -> float:
    """CPU seconds per photo that stay on the CPU when the networks run on a GPU: decode, distort at the 9
    levels, decode each distorted image, and every network's resize/crop/normalise of every view."""

    def work() -> None:
        pristine = decode_rgb(photo.read_bytes())
        views = [np.asarray(pristine)]
        views += [np.asarray(decode_rgb(distort(pristine, "jpeg", lv, 0, photo.name)[0])) for lv in LEVELS]
        for lab in lite.values():
            for view in views:
                lab.transform(to_tensor(view))

    return timed(work, 3)


def classifier_rows(names: list[str], photo: Path, lite: dict[str, TorchClassifier]) -> list:
    rows = [(f"{name} forward per view", classifier_forward(name, rgb(photo), lite)) for name in names]
    return [*rows, ("CPU part per photo (decode, distort, the Lite trio's transforms)", cpu_part(photo, lite))]


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".jpeg", ".jpg"})[: args.count + 1]
    lite = {name: build_labeler(name) for name in LITE}
    with tempfile.TemporaryDirectory() as out:
        photo_s = end_to_end(photos, Path(out), list(lite.values()))
    rows = [(f"end to end per photo, {len(LEVELS) + 1} views, Lite trio", photo_s)]
    rows += classifier_rows([n for n in args.classifiers.split(",") if n], photos[0], lite)
    if args.coco:
        coco = rgb(sorted(args.coco.glob("*.jpg"))[0])
        rows += [(f"{n} forward per view", detector_forward(n, coco)) for n in args.detectors.split(",") if n]
    print(report(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
