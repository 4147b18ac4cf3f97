"""The utility network: a torchvision ResNet-18 with two outputs (non-useful, useful).

With ``views=2`` the input holds two 3-channel views (``PreprocessSpec.native_crop``): the one
ResNet-18 trunk reads both (as one batch), and the heads see both feature vectors side by side.
``aux`` adds a head of auxiliary targets (distortion severity, each labeller's retained
confidence) that teaches on every row, dropped ones too; only ``logits`` are exported.
With ``quality=True`` the input's last channel is the quality plane (``PreprocessSpec.quality_map``):
its mean gives (known, log-quality), a small MLP embeds them, and the heads see that embedding
beside the image features, so the file's own compression setting and the pixels are read together.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from app.usage import UsageError

log = logging.getLogger(__name__)

RESNET18_FILE = "resnet18-f37072fd.pth"
FEATURES = 512
QUALITY_FEATURES = 32


def quality_mlp() -> nn.Sequential:
    """(known, log q) -> 32-d embedding: the quality branch of every utility network."""
    return nn.Sequential(
        nn.Linear(2, QUALITY_FEATURES), nn.ReLU(), nn.Linear(QUALITY_FEATURES, QUALITY_FEATURES), nn.ReLU()
    )


def quality_inputs(plane: torch.Tensor) -> torch.Tensor:
    """(N, 1, S, S) quality plane (log q / log 100, or -1 where unknown) -> (N, 2) (known, log q)."""
    value = plane.mean((1, 2, 3))
    known = (value > -0.5).to(plane.dtype)
    return torch.stack([known, value.clamp(min=0.0) * known], 1)


class PretrainedWeightsMissing(FileNotFoundError):
    """--pretrained was asked for but the torch hub cache lacks the ImageNet weights."""


class UtilityNet(ResNet):
    """ResNet-18 (torchvision's, same parameter names) over one or two views, plus an auxiliary head."""

    def __init__(self, views: int = 1, aux: int = 0, quality: bool = False) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2], zero_init_residual=True)
        if views not in (1, 2):
            raise ValueError(f"views must be 1 or 2, got {views}")
        self.views = views
        width = FEATURES * views + (QUALITY_FEATURES if quality else 0)
        self.quality = quality_mlp() if quality else None
        self.fc = nn.Linear(width, 2)
        self.aux = nn.Linear(width, aux) if aux else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def quality_features(self, plane: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) quality plane -> (N, 32)."""
        return self.quality(quality_inputs(plane))

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, auxiliary outputs or None)."""
        q = None
        if self.quality is not None:
            q = self.quality_features(x[:, -1:])
            x = x[:, :-1]
        if self.views == 1:
            f = self.features(x)
        else:
            n = x.shape[0]
            both = torch.cat([x[:, :3], x[:, 3:]], 0)
            if x.is_contiguous(memory_format=torch.channels_last):  # cat of channel slices falls back to NCHW
                both = both.contiguous(memory_format=torch.channels_last)
            both = self.features(both)
            f = torch.cat([both[:n], both[n:]], 1)
        if q is not None:
            f = torch.cat([f, q.to(f.dtype)], 1)
        return self.fc(f), (self.aux(f) if self.aux is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[0]


def pretrained_path() -> Path:
    """Where torchvision keeps the ImageNet ResNet-18 weights: $TORCH_HOME/hub/checkpoints/..."""
    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE


def build_model(pretrained: bool = False, views: int = 1, aux: int = 0, quality: bool = False) -> UtilityNet:
    """The utility network; ImageNet weights only from the local hub cache, never downloaded."""
    model = UtilityNet(views, aux, quality)
    if pretrained:
        path = pretrained_path()
        if not path.is_file():
            raise PretrainedWeightsMissing(
                f"--pretrained needs the ImageNet ResNet-18 weights at {path} (set TORCH_HOME or copy the file "
                "there); nothing is downloaded. Leave out --pretrained to train from scratch."
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=False)
        log.info("ImageNet weights from %s", path)
    return model


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """``--init``: every weight of ``state`` whose name and shape the model has (the trunk, as
    torchvision's fine-tuning recipes keep it); heads of another layout (views, quality plane, aux
    targets, task) start fresh. Returns the names left fresh; an error when no trunk weight fits."""
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith("layer") for k in fits):
        raise UsageError(f"--init {source}: no ResNet-18 trunk weight fits this model (not a utility checkpoint?)")
    model.load_state_dict(fits, strict=False)
    fresh = sorted(k for k in own if k not in fits)
    if fresh:
        log.info("--init %s: %d tensors loaded; fresh (other layout): %s", source, len(fits), ", ".join(fresh))
    return fresh


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """The network a checkpoint's arguments describe, with its weights (older checkpoints: 1 view, no aux)."""
    args = ckpt.get("args", {})
    if args.get("backbone", "resnet18") != "resnet18":
        from training.train.backbone import build_lite_model

        lite = build_lite_model(args["backbone"], bool(args.get("quality_map")))
        lite.load_state_dict(ckpt["model"])
        return lite.eval()
    views = 2 if args.get("native_crop") else 1
    model = build_model(False, views, len(ckpt.get("aux_targets", [])), bool(args.get("quality_map")))
    model.load_state_dict(ckpt["model"])
    return model.eval()
