"""Detectors whose models ship inside installed packages, so they run offline on a CPU.

Confidences in [0, 1], with 0.5 at each detector's own default decision:

* ``hog-people`` (OpenCV HOG + linear SVM, class ``person``): the SVM margin m of each grouped
  window, mapped to sigmoid(2m). m = 0 is the SVM's boundary (OpenCV's default ``hitThreshold``), so
  confidence ≥ 0.5 means "detected with OpenCV's defaults"; windows down to m = -0.5 (sigmoid = 0.27) are
  kept as low-confidence candidates so a drop under distortion is measured, not clipped.
* ``haar-face`` (OpenCV Haar cascade, frontal faces, class ``face``): the number n of raw windows
  merged into a detection, mapped to n / (n + 4). OpenCV's default ``minNeighbors=3`` keeps n ≥ 4,
  i.e. confidence ≥ 0.5; candidates with n ≥ 2 are kept.
* ``mtcnn-face`` (facenet-pytorch MTCNN, class ``face``): the O-Net face probability as is.

scikit-image's LBP cascade was left out: it returns boxes without any score, so its confidence
could not fall under distortion. Faces are not a COCO class, so face detectors always use the
pristine image as their reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from training.labelers.base import DETECTION, Detection, Labeler, WeightsNotFoundError


class HogPeople(Labeler):
    name = "hog-people"
    task = DETECTION
    classes = ("person",)

    def __init__(self, batch_size: int = 1, min_margin: float = -0.5, scale: float = 1.05) -> None:
        import cv2

        super().__init__(batch_size)
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.min_margin, self.scale = min_margin, scale

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        return [self._detect(img) for img in images]

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        rects, margins = self.hog.detectMultiScale(
            np.ascontiguousarray(rgb[:, :, ::-1]),
            hitThreshold=self.min_margin,
            winStride=(8, 8),
            padding=(8, 8),
            scale=self.scale,
            groupThreshold=2,
        )
        return [
            ((float(x), float(y), float(x + w), float(y + h)), "person", 1.0 / (1.0 + math.exp(-2.0 * float(m))))
            for (x, y, w, h), m in zip(rects, np.ravel(margins), strict=True)
        ]


class HaarFace(Labeler):
    name = "haar-face"
    task = DETECTION
    classes = ("face",)

    def __init__(self, batch_size: int = 1, cascade: str = "haarcascade_frontalface_default.xml") -> None:
        import cv2

        super().__init__(batch_size)
        path = cv2.data.haarcascades + cascade
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise WeightsNotFoundError(f"Haar cascade {path} is missing: reinstall opencv-python-headless")
        self._gray = lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        return [self._detect(img) for img in images]

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        rects, counts = self.cascade.detectMultiScale2(
            self._gray(rgb), scaleFactor=1.1, minNeighbors=1, minSize=(20, 20)
        )
        return [
            ((float(x), float(y), float(x + w), float(y + h)), "face", float(n) / (float(n) + 4.0))
            for (x, y, w, h), n in zip(rects, np.ravel(counts), strict=True)
        ]


class MtcnnFace(Labeler):
    name = "mtcnn-face"
    task = DETECTION
    classes = ("face",)

    def __init__(self, device: str = "cpu", batch_size: int = 1) -> None:
        try:
            from facenet_pytorch import MTCNN
        except ModuleNotFoundError as exc:
            raise WeightsNotFoundError(
                "mtcnn-face needs facenet-pytorch, whose wheel ships the P/R/O-Net weights: "
                "pip install --no-deps facenet-pytorch requests (its torch pins are too old to install with deps)"
            ) from exc
        super().__init__(batch_size)
        self.mtcnn = MTCNN(keep_all=True, device=device)

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        return [self._detect(img) for img in images]

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        from PIL import Image

        boxes, probs = self.mtcnn.detect(Image.fromarray(rgb))
        if boxes is None:
            return []
        return [
            ((float(b[0]), float(b[1]), float(b[2]), float(b[3])), "face", float(p))
            for b, p in zip(boxes, np.ravel(probs), strict=True)
            if p is not None
        ]
