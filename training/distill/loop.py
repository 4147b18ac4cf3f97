"""One distillation step: the student, its loss against the teacher, and the schedule.

Loss per view: BCE of the student's utility logit (logit(useful) - logit(non-useful)) at temperature
``T`` against the teacher's at the same temperature (soft targets keep the within-level ranking,
which a hard label throws away), plus ``imagenet_weight`` x KL(teacher's ImageNet distribution ||
the student's auxiliary 1000-way head): the "how hard is this image for an ImageNet network" half.
The validation is in :mod:`training.distill.validation`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from app.preprocess import PreprocessSpec
from training.distill.teacher import VariantTeacher
from training.train.dataset import normalize
from training.train.model import UtilityNet

IMAGENET = 1000


def student_spec(size: int) -> PreprocessSpec:
    """The shipped ResNet-18's input: a resized whole view, a native crop and the quality plane."""
    return PreprocessSpec(size=size, native_crop=True, quality_map=True)


def build_student() -> UtilityNet:
    return UtilityNet(views=2, aux=IMAGENET, quality=True)


def utility_logit(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, 1] - logits[:, 0]


def distill_loss(
    logits: torch.Tensor, imagenet: torch.Tensor, t_utility: torch.Tensor, t_imagenet: torch.Tensor, args: Any
) -> tuple[torch.Tensor, dict[str, float]]:
    tau = args.temperature
    u = F.binary_cross_entropy_with_logits(utility_logit(logits.float()) / tau, torch.sigmoid(t_utility / tau))
    kl = F.kl_div(
        F.log_softmax(imagenet.float(), 1), F.log_softmax(t_imagenet, 1), log_target=True, reduction="batchmean"
    )
    return u + args.imagenet_weight * kl, {"utility": float(u.detach()), "imagenet_kl": float(kl.detach())}


def lr_at(step: int, args: Any) -> float:
    """Linear warm-up, then cosine to zero at ``--steps``."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    done = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.lr * 0.5 * (1 + math.cos(math.pi * done))


def student_input(pixels: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    return normalize(pixels, spec).contiguous(memory_format=torch.channels_last)


def train_step(
    student: UtilityNet,
    teacher: VariantTeacher,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, ...],
    specs: tuple[PreprocessSpec, PreprocessSpec],
    args: Any,
) -> dict[str, float]:
    s_pixels, t_pixels = batch[0], batch[1]
    target = teacher(normalize(t_pixels, specs[1]))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
        logits, imagenet = student.forward_all(student_input(s_pixels, specs[0]))
    loss, parts = distill_loss(logits, imagenet, target.utility, target.imagenet, args)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    useful = float((target.utility > teacher.threshold_logit).sum())
    return {"loss": float(loss.detach()), **parts, "views_per_step": float(len(s_pixels)), "useful": useful}
