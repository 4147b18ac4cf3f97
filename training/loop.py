"""One epoch of training, evaluation, and class balancing: the parts train and export share."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from app.preprocess import PreprocessSpec
from training.data import Split, normalize
from training.metrics import binary_metrics

log = logging.getLogger(__name__)

BALANCING = ("augment", "weighted", "none")
SHIFT = 8  # pixels of reflect-padded random translation for augmented copies of the minority class


def epoch_order(labels: torch.Tensor, balance: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The epoch's sample order and a mask of samples that are augmented copies.

    ``augment`` (the paper's choice): every image once, plus random augmented copies of the minority
    class until both classes have as many; their label is kept (flip/shift does not change utility).
    ``weighted``: as many draws, with replacement, with equal probability per class.
    """
    n = len(labels)
    if balance == "none":
        return torch.randperm(n, generator=gen), torch.zeros(n, dtype=torch.bool)
    counts = torch.bincount(labels, minlength=2)
    total = 2 * int(counts.max())
    if balance == "weighted":
        weights = 1.0 / counts.clamp(min=1)[labels].to(torch.float64)
        return torch.multinomial(weights, total, replacement=True, generator=gen), torch.zeros(total, dtype=torch.bool)
    if balance != "augment":
        raise ValueError(f"balance must be one of {BALANCING}")
    index, copy = [torch.arange(n)], [torch.zeros(n, dtype=torch.bool)]
    for cls in (0, 1):
        members = torch.nonzero(labels == cls).flatten()
        extra = int(counts.max()) - len(members)
        if extra > 0 and len(members):
            index.append(members[torch.randint(len(members), (extra,), generator=gen)])
            copy.append(torch.ones(extra, dtype=torch.bool))
    order = torch.randperm(sum(len(i) for i in index), generator=gen)
    return torch.cat(index)[order], torch.cat(copy)[order]


def augment(x: torch.Tensor, copies: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip for all; a random shift (reflect padding) too for augmented copies."""
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if copies.any():
        size = x.shape[-1]
        padded = F.pad(x[copies], (SHIFT, SHIFT, SHIFT, SHIFT), mode="reflect")
        offsets = torch.randint(0, 2 * SHIFT + 1, (int(copies.sum()), 2), generator=gen).tolist()
        shifted = [p[:, dy : dy + size, dx : dx + size] for p, (dy, dx) in zip(padded, offsets, strict=True)]
        x = x.clone()
        x[copies] = torch.stack(shifted)
    return x


def to_input(pixels: torch.Tensor, spec: PreprocessSpec, channels_last: bool) -> torch.Tensor:
    x = normalize(pixels, spec)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Split,
    spec: PreprocessSpec,
    cfg: Any,
    gen: torch.Generator,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over the balanced order; returns mean loss and accuracy on what was seen."""
    model.train()
    order, copies = epoch_order(data.labels, cfg.balance, gen)
    steps = (len(order) + cfg.batch_size - 1) // cfg.batch_size
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(range(steps), desc=desc, mininterval=10)
    for step in bar:
        idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        x = augment(normalize(data.pixels[idx], spec), copies[step * cfg.batch_size : (step + 1) * cfg.batch_size], gen)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = data.labels[idx]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(getattr(cfg, "bf16", False))):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1), "steps": steps, "images": seen}


@torch.no_grad()
def predict(
    model: nn.Module, pixels: torch.Tensor, spec: PreprocessSpec, batch_size: int = 64, channels_last: bool = False
) -> torch.Tensor:
    """Logits (N, 2) in eval mode."""
    model.eval()
    out = [model(to_input(pixels[i : i + batch_size], spec, channels_last)) for i in range(0, len(pixels), batch_size)]
    return torch.cat(out) if out else torch.empty((0, 2))


def evaluate(
    model: nn.Module, data: Split, spec: PreprocessSpec, batch_size: int = 64, channels_last: bool = False
) -> dict[str, Any]:
    """Loss and the binary metrics (accuracy, balanced accuracy, AUROC, confusion) on a split."""
    logits = predict(model, data.pixels, spec, batch_size, channels_last)
    loss = float(F.cross_entropy(logits, data.labels)) if len(data) else float("nan")
    p_useful = torch.softmax(logits, 1)[:, 1].numpy()
    return {"loss": loss, **binary_metrics(data.labels.numpy(), p_useful)}


def per_group(
    data: Split, model: nn.Module, spec: PreprocessSpec, column: str, channels_last: bool = False
) -> dict[str, Any]:
    """Accuracy per value of a manifest column (e.g. ``level``) for the model card."""
    logits = predict(model, data.pixels, spec, channels_last=channels_last)
    pred = logits.argmax(1).numpy()
    y = data.labels.numpy()
    out = {}
    for value, rows in data.frame.groupby(column).groups.items():
        rows = np.asarray(rows)
        out[str(value)] = {
            "n": len(rows),
            "useful": int(y[rows].sum()),
            "accuracy": float((pred[rows] == y[rows]).mean()),
        }
    return out
