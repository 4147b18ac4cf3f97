"""What every labeler provides: a name, a task, and batched predictions on RGB uint8 arrays."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import numpy as np

from training.utility import Box

Detection = tuple[Box, str, float]
CLASSIFICATION = "classification"
DETECTION = "detection"


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not on this machine (and downloading was not allowed)."""


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Labeler(ABC):
    """A pretrained network (or classical detector) whose decisions define utility."""

    name: str = ""
    task: str = ""
    # Detection only: the class names it can output, or None for all COCO classes.
    classes: tuple[str, ...] | None = None

    def __init__(self, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def predict(self, images: Sequence[np.ndarray]) -> list:
        """One output per image, in order: a probability vector (classification) or a list of
        :data:`Detection` (detection)."""
        out: list = []
        for batch in chunks(images, self.batch_size):
            outputs = self.predict_batch(batch)
            if len(outputs) != len(batch):
                raise RuntimeError(f"{self.name} returned {len(outputs)} outputs for {len(batch)} images")
            out.extend(outputs)
        return out

    @abstractmethod
    def predict_batch(self, images: Sequence[np.ndarray]) -> list: ...
