"""The distillation's validation: held-out photos the views never draw, the student scored against the
teacher and, where the photos are labelled, against their labels, which is what selects the checkpoint.

The rows come from one of two places, built once and cached (``val.pt``: student inputs, teacher answers):

- ``--val-photos N``: seeded photos of the train split over :data:`VAL_GRID` (the label stage's grid),
  with the teacher's decision as the only label;
- ``--val-labels DIR...``: label-stage output folders (``image-utility label`` run on held-out photos),
  every row's file as it was labelled, with its combined label. Agreement with the teacher does not track
  the label metric (docs/training.md, "Distillation"), so the checkpoint is then chosen on label AUROC.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from app.preprocess import PreprocessSpec
from training.distill.loop import student_input, utility_logit
from training.distill.teacher import VariantTeacher
from training.distill.views import as_inputs, load_source
from training.files import save_atomic
from training.label.distortions import distort, levels_of
from training.metrics import auroc, best_threshold, binary_metrics, pearson
from training.train.dataset import normalize
from training.train.model import UtilityNet

log = logging.getLogger(__name__)

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
OTHER = ("blur", "noise", "downscale")
CLIP = 15.0  # teacher logits beyond this are all "certainly useful"; correlations read the clipped values
CHUNK = 64
TEACHER_ON = "val (the teacher's decisions)"
LABELS_ON = "val (labels)"


@dataclass
class ValSet:
    """Student inputs of the validation views, the teacher's answers on the same files, and their labels."""

    pixels: torch.Tensor  # uint8 (N, C, S, S), the student's spec
    utility: torch.Tensor  # (N,) teacher logit
    top1: torch.Tensor  # (N,) teacher's ImageNet class
    distortion: list[str]
    level: list[str]
    threshold_logit: float  # the teacher's decision: utility > this
    label: torch.Tensor | None = None  # (N,) 1 / 0 / NaN (dropped), from --val-labels
    source: list[str] = field(default_factory=list)  # photo file name per row
    origin: list[str] = field(default_factory=list)  # the --val-labels folders; empty for the seeded grid

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


def _answers(
    files: Iterable[bytes | Image.Image], teacher: VariantTeacher, spec: PreprocessSpec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(student uint8 inputs, teacher utility logits, teacher ImageNet top-1) of a few files."""
    s_in, t_in = zip(*(as_inputs(f, (spec, teacher.spec)) for f in files), strict=True)
    out = teacher(normalize(torch.from_numpy(np.stack(t_in)), teacher.spec))
    return torch.from_numpy(np.stack(s_in)), out.utility, out.imagenet.argmax(1)


def _joined(parts: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))


def build_valset(paths: list[Path], teacher: VariantTeacher, spec: PreprocessSpec, seed: int) -> ValSet:
    """The seeded held-out photos over :data:`VAL_GRID`, the teacher's decision as the label."""
    parts, dist, level, source = [], [], [], []
    for path in tqdm(paths, desc="validation views", unit="photo"):
        files = val_files(path, seed)
        parts.append(_answers((f for _, _, f in files), teacher, spec))
        dist += [d for d, _, _ in files]
        level += [lv for _, lv, _ in files]
        source += [path.name] * len(files)
    pixels, utility, top1 = _joined(parts)
    return ValSet(pixels, utility, top1, dist, level, teacher.threshold_logit, source=source)


def _level(value: Any) -> str:
    """A manifest level as the grid writes it ("4", not "4.0" where a column also holds empties)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def build_labelled_valset(
    rows: pd.DataFrame, teacher: VariantTeacher, spec: PreprocessSpec, origin: list[str]
) -> ValSet:
    """Every labelled row's file (``path``), as the labelers judged it; ``label`` -1 (dropped) kept as NaN."""
    parts = []
    for start in tqdm(range(0, len(rows), CHUNK), desc="labelled validation rows", unit="chunk"):
        chunk = rows["path"].iloc[start : start + CHUNK]
        parts.append(_answers((Path(f).read_bytes() for f in chunk), teacher, spec))
    pixels, utility, top1 = _joined(parts)
    label = torch.tensor(rows["label"].to_numpy(dtype=np.float32))
    label[label < 0] = float("nan")
    return ValSet(
        pixels,
        utility,
        top1,
        rows["distortion"].astype(str).tolist(),
        [_level(v) for v in rows["level"]],
        teacher.threshold_logit,
        label=label,
        source=[Path(s).name for s in rows["source"].astype(str)],
        origin=origin,
    )


def load_valset(
    path: Path, build: tuple[list[Path], pd.DataFrame | None], teacher: VariantTeacher, spec: PreprocessSpec, args: Any
) -> ValSet:
    """The cached validation set, rebuilt when ``--val-labels`` changed since it was written."""
    photos, labelled = build
    origin = sorted(str(p) for p in args.val_labels or [])
    if path.is_file():
        val = ValSet.load(path)
        if val.origin == origin:
            return val
        log.info("rebuilding %s: its rows came from %s", path, val.origin or "--val-photos")
    if labelled is not None:
        val = build_labelled_valset(labelled, teacher, spec, origin)
    else:
        val = build_valset(photos, teacher, spec, args.seed)
    save_atomic(path, val.save)
    return val


@torch.inference_mode()
def student_outputs(
    student: UtilityNet, pixels: torch.Tensor, spec: PreprocessSpec, bf16: bool
) -> tuple[np.ndarray, np.ndarray]:
    was = student.training
    student.eval()
    u, top1 = [], []
    for chunk in torch.split(pixels, CHUNK):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, imagenet = student.forward_all(student_input(chunk, spec))
        u.append(utility_logit(logits.float()))
        top1.append(imagenet.float().argmax(1))
    student.train(was)
    return torch.cat(u).numpy(), torch.cat(top1).numpy()


def _sigmoid(s: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-s.astype(np.float64)))


def validate(student: UtilityNet, val: ValSet, spec: PreprocessSpec, bf16: bool) -> dict[str, Any]:
    """The student against the teacher on the validation views (the teacher's decision as the label) and,
    where the rows are labelled, against the labels (``labels``)."""
    s, s_top1 = student_outputs(student, val.pixels, spec, bf16)
    t = val.utility.numpy()
    y = (t > val.threshold_logit).astype(int)
    p = _sigmoid(s)
    threshold = best_threshold(y, p)
    dist, level = np.asarray(val.distortion), np.asarray(val.level)
    within = {}
    for lv in WITHIN_LEVELS:
        m = (dist == "jpeg") & (level == lv)
        within[lv] = {"r": pearson(s[m].clip(-CLIP, CLIP), t[m].clip(-CLIP, CLIP)), "auroc": auroc(y[m], s[m])}
    pristine = dist == "pristine"
    out = {
        **binary_metrics(y, p, threshold),
        "best_threshold": threshold,
        "r": pearson(s.clip(-CLIP, CLIP), t.clip(-CLIP, CLIP)),
        "r_within_level": _mean_defined([v["r"] for v in within.values()]),
        "within_level": within,
        "auroc_other": {d: auroc(y[dist == d], s[dist == d]) for d in OTHER},
        "pristine_useful": float((p[pristine] >= threshold).mean()) if pristine.any() else float("nan"),
        "imagenet_top1_agreement": float((s_top1 == val.top1.numpy()).mean()),
    }
    if val.label is not None:
        out["labels"] = label_metrics(val.label.numpy(), s, dist, level)
    return out


def label_metrics(label: np.ndarray, s: np.ndarray, dist: np.ndarray, level: np.ndarray) -> dict[str, Any]:
    """On the labelled rows (dropped ones left out): the figures the predictor issue's goals name, at the
    service's 0.5 and at the balanced-accuracy optimum (the threshold an export would write)."""
    keep = np.isfinite(label)
    y, s, dist, level = label[keep].astype(int), s[keep], dist[keep], level[keep]
    p = _sigmoid(s)
    threshold = best_threshold(y, p)
    jpeg = dist == "jpeg"
    pristine = dist == "pristine"
    return {
        **binary_metrics(y, p, 0.5),
        "best_threshold": threshold,
        "balanced_accuracy_at_best": binary_metrics(y, p, threshold)["balanced_accuracy"],
        "auroc_jpeg": auroc(y[jpeg], s[jpeg]),
        "within_level": {lv: auroc(y[m], s[m]) for lv in WITHIN_LEVELS if (m := jpeg & (level == lv)).any()},
        "auroc_other": {d: auroc(y[dist == d], s[dist == d]) for d in OTHER if (dist == d).any()},
        "pristine_useful": float((p[pristine] >= 0.5).mean()) if pristine.any() else float("nan"),
    }


def selection(metrics: dict[str, Any]) -> tuple[float, str, float]:
    """(value, what it is measured on, threshold) that picks ``best.pt``: label AUROC where there are labels."""
    if "labels" in metrics:
        return metrics["labels"]["auroc"], LABELS_ON, metrics["labels"]["best_threshold"]
    return metrics["auroc"], TEACHER_ON, metrics["best_threshold"]


def _mean_defined(values: list[float]) -> float:
    kept = [v for v in values if np.isfinite(v)]
    return float(np.mean(kept)) if kept else float("nan")


def format_val(m: dict[str, Any]) -> str:
    other = " ".join(f"{k} {v:.3f}" for k, v in m["auroc_other"].items())
    text = (
        f"auroc {m['auroc']:.4f} bal_acc {m['balanced_accuracy']:.4f} r {m['r']:.3f} "
        f"r within 4-6 {m['r_within_level']:.3f} | {other} | pristine useful {m['pristine_useful']:.3f} "
        f"top-1 agreement {m['imagenet_top1_agreement']:.3f}"
    )
    if "labels" in m:
        lab = m["labels"]
        within = " ".join(f"{k} {v:.2f}" for k, v in lab["within_level"].items())
        text += (
            f" || labels: auroc {lab['auroc']:.4f} (jpeg {lab['auroc_jpeg']:.4f}) bal_acc@0.5 "
            f"{lab['balanced_accuracy']:.4f} @best {lab['balanced_accuracy_at_best']:.4f} within {within}"
        )
    return text
