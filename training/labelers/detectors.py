"""Detection labelers built on torchvision's COCO detectors (weights from the torch hub cache)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from training.labelers.base import DETECTION, Detection, Labeler
from training.labelers.classifiers import to_tensor
from training.labelers.weights import torchvision_model


class TorchDetector(Labeler):
    """Boxes, COCO class names and scores; the models keep their low-score candidates (>= 0.05 for
    the R-CNNs) so that a confidence drop under distortion is measured, not clipped."""

    task = DETECTION
    classes = None  # every COCO class

    def __init__(
        self, name: str, model: nn.Module, categories: Sequence[str], device: str = "cpu", batch_size: int = 4
    ) -> None:
        super().__init__(batch_size)
        self.name = name
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.categories = list(categories)

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        batch = [to_tensor(img).to(self.device).float().div_(255.0) for img in images]
        outputs = self.model(batch)
        return [self._to_detections(out) for out in outputs]

    def _to_detections(self, out: dict[str, torch.Tensor]) -> list[Detection]:
        boxes = out["boxes"].cpu().tolist()
        labels = out["labels"].cpu().tolist()
        scores = out["scores"].cpu().tolist()
        return [(tuple(b), self.categories[k], float(s)) for b, k, s in zip(boxes, labels, scores, strict=True)]


def build_torchvision_detector(name: str, device: str, allow_download: bool, batch_size: int) -> TorchDetector:
    model, weights = torchvision_model(name, allow_download)
    return TorchDetector(name, model, weights.meta["categories"], device, batch_size)
