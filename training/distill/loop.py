"""One distillation step, and the validation that decides whether the student is worth exporting.

Loss per view: BCE of the student's utility logit (logit(useful) - logit(non-useful)) at temperature
``T`` against the teacher's at the same temperature (soft targets keep the within-level ranking,
which a hard label throws away), plus ``imagenet_weight`` x KL(teacher's ImageNet distribution ||
the student's auxiliary 1000-way head): the "how hard is this image for an ImageNet network" half.
Validation runs on whole held-out photos at the label stage's own levels, teacher answers cached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from app.preprocess import PreprocessSpec
from training.distill.teacher import VariantTeacher
from training.distill.views import as_inputs, load_source
from training.label.distortions import distort, levels_of
from training.metrics import auroc, best_threshold, binary_metrics, pearson
from training.train.dataset import normalize
from training.train.model import UtilityNet

IMAGENET = 1000
# (distortion, levels) of each validation photo: the label stage's grid, near-pristine and pristine included
VAL_GRID: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("jpeg", tuple(range(1, 10))),
    ("jpeg-hq", (1, 2, 3)),
    ("pristine", (1,)),
    ("blur", (4, 6)),
    ("noise", (4, 6)),
    ("downscale", (4, 6)),
)
WITHIN_LEVELS = ("4", "5", "6")  # JPEG levels where the go / no-go correlation is read
CLIP = 15.0  # teacher logits beyond this are all "certainly useful"; correlations read the clipped values


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


@dataclass
class ValSet:
    """Student inputs of the validation views and the teacher's answers on the same files."""

    pixels: torch.Tensor  # uint8 (N, C, S, S), the student's spec
    utility: torch.Tensor  # (N,) teacher logit
    top1: torch.Tensor  # (N,) teacher's ImageNet class
    distortion: list[str]
    level: list[str]
    threshold_logit: float  # the teacher's decision: utility > this

    def save(self, path: Path) -> None:
        torch.save(self.__dict__, path)

    @classmethod
    def load(cls, path: Path) -> ValSet:
        return cls(**torch.load(path, weights_only=False))


def val_files(path: Path, seed: int) -> list[tuple[str, str, bytes | Image.Image]]:
    """(distortion, level, file) of one held-out photo over :data:`VAL_GRID`, made from the photo as the
    views are (at most :data:`~training.distill.views.MAX_SIDE`); "pristine" is that image, lossless."""
    img = load_source(path)
    out = []
    for name, levels in VAL_GRID:
        for level in levels_of(name, levels):
            file = img if name == "pristine" else distort(img, name, level, seed, path.name)[0]
            out.append((name, str(level), file))
    return out


def build_valset(paths: list[Path], teacher: VariantTeacher, spec: PreprocessSpec, seed: int) -> ValSet:
    pixels, utility, top1, dist, level = [], [], [], [], []
    for path in tqdm(paths, desc="validation views", unit="photo"):
        files = val_files(path, seed)
        s_in, t_in = zip(*(as_inputs(f, (spec, teacher.spec)) for _, _, f in files), strict=True)
        out = teacher(normalize(torch.from_numpy(np.stack(t_in)), teacher.spec))
        pixels.append(torch.from_numpy(np.stack(s_in)))
        utility.append(out.utility)
        top1.append(out.imagenet.argmax(1))
        dist += [d for d, _, _ in files]
        level += [lv for _, lv, _ in files]
    return ValSet(torch.cat(pixels), torch.cat(utility), torch.cat(top1), dist, level, teacher.threshold_logit)


@torch.inference_mode()
def student_outputs(
    student: UtilityNet, pixels: torch.Tensor, spec: PreprocessSpec, bf16: bool
) -> tuple[np.ndarray, np.ndarray]:
    was = student.training
    student.eval()
    u, top1 = [], []
    for chunk in torch.split(pixels, 64):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, imagenet = student.forward_all(student_input(chunk, spec))
        u.append(utility_logit(logits.float()))
        top1.append(imagenet.float().argmax(1))
    student.train(was)
    return torch.cat(u).numpy(), torch.cat(top1).numpy()


def validate(student: UtilityNet, val: ValSet, spec: PreprocessSpec, bf16: bool) -> dict[str, Any]:
    """The student against the teacher on the validation views (the teacher's decision as the label)."""
    s, s_top1 = student_outputs(student, val.pixels, spec, bf16)
    t = val.utility.numpy()
    y = (t > val.threshold_logit).astype(int)
    p = 1.0 / (1.0 + np.exp(-s.astype(np.float64)))
    threshold = best_threshold(y, p)
    dist, level = np.asarray(val.distortion), np.asarray(val.level)
    within = {}
    for lv in WITHIN_LEVELS:
        m = (dist == "jpeg") & (level == lv)
        within[lv] = {"r": pearson(s[m].clip(-CLIP, CLIP), t[m].clip(-CLIP, CLIP)), "auroc": auroc(y[m], s[m])}
    per_kind = {d: auroc(y[dist == d], s[dist == d]) for d in ("blur", "noise", "downscale")}
    pristine = dist == "pristine"
    return {
        **binary_metrics(y, p, threshold),
        "best_threshold": threshold,
        "r": pearson(s.clip(-CLIP, CLIP), t.clip(-CLIP, CLIP)),
        "r_within_level": _mean_defined([v["r"] for v in within.values()]),
        "within_level": within,
        "auroc_other": per_kind,
        "pristine_useful": float((p[pristine] >= threshold).mean()) if pristine.any() else float("nan"),
        "imagenet_top1_agreement": float((s_top1 == val.top1.numpy()).mean()),
    }


def _mean_defined(values: list[float]) -> float:
    kept = [v for v in values if np.isfinite(v)]
    return float(np.mean(kept)) if kept else float("nan")


def format_val(m: dict[str, Any]) -> str:
    other = " ".join(f"{k} {v:.3f}" for k, v in m["auroc_other"].items())
    return (
        f"auroc {m['auroc']:.4f} bal_acc {m['balanced_accuracy']:.4f} r {m['r']:.3f} "
        f"r within 4-6 {m['r_within_level']:.3f} | {other} | pristine useful {m['pristine_useful']:.3f} "
        f"top-1 agreement {m['imagenet_top1_agreement']:.3f}"
    )
