"""The utility network: torchvision ResNet-18 with two outputs (non-useful, useful)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18

log = logging.getLogger(__name__)

RESNET18_FILE = "resnet18-f37072fd.pth"


class PretrainedWeightsMissing(FileNotFoundError):
    """--pretrained was asked for but the torch hub cache lacks the ImageNet weights."""


def pretrained_path() -> Path:
    """Where torchvision keeps the ImageNet ResNet-18 weights: $TORCH_HOME/hub/checkpoints/..."""
    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE


def build_model(pretrained: bool = False) -> nn.Module:
    """ResNet-18 with a 2-way head; ImageNet weights only from the local hub cache, never downloaded."""
    model = resnet18(weights=None)
    if pretrained:
        path = pretrained_path()
        if not path.is_file():
            raise PretrainedWeightsMissing(
                f"--pretrained needs the ImageNet ResNet-18 weights at {path} (set TORCH_HOME or copy the file "
                "there); nothing is downloaded. Leave out --pretrained to train from scratch."
            )
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        log.info("ImageNet weights from %s", path)
    model.fc = nn.Linear(model.fc.in_features, 2)
    return model
