"""One epoch: its seeded order and class balancing, augmentation, the training pass, and evaluation.

Every random draw of an epoch comes from :func:`epoch_generator`, which depends only on (seed,
epoch): an epoch replays identically after ``train --resume``.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from app.preprocess import UNKNOWN_QUALITY, PreprocessSpec, quality_table
from training.metrics import aux_agreement, best_threshold, binary_metrics, within_level_auroc
from training.options.train import BALANCING
from training.train import distributed
from training.train.dataset import Split, normalize

log = logging.getLogger(__name__)

SHIFT = 8  # pixels of reflect-padded random translation for augmented copies of the minority class


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch): an epoch replays identically after --resume."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def epoch_order(labels: torch.Tensor, balance: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The epoch's sample order and a mask of samples that are augmented copies.

    ``augment`` (the paper's choice): every image once, plus random augmented copies of the minority
    class until both classes have as many; their label is kept (flip/shift does not change utility).
    ``weighted``: as many draws, with replacement, with equal probability per class.
    Dropped rows (label -1, kept for their dense targets) are drawn as often as they occur.
    """
    n = len(labels)
    if balance == "none":
        return torch.randperm(n, generator=gen), torch.zeros(n, dtype=torch.bool)
    labelled = labels >= 0
    counts = torch.bincount(labels[labelled], minlength=2)
    n_unlabelled = int((~labelled).sum())
    total = 2 * int(counts.max()) + n_unlabelled
    if balance == "weighted":
        per_class = counts.max().to(torch.float64) / counts.clamp(min=1).to(torch.float64)
        weights = torch.where(labelled, per_class[labels.clamp(min=0)], torch.ones((), dtype=torch.float64))
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


def augment_draws(copies: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The random choices of :func:`augment` for a batch: a flip per row, a (dy, dx) shift per row
    (drawn for the augmented copies only). Drawn for a whole global batch, they can be applied to shares."""
    flip = torch.rand(len(copies), generator=gen) < 0.5
    shift = torch.zeros((len(copies), 2), dtype=torch.long)
    if copies.any():
        shift[copies] = torch.randint(0, 2 * SHIFT + 1, (int(copies.sum()), 2), generator=gen)
    return flip, shift


def apply_augment(x: torch.Tensor, copies: torch.Tensor, flip: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Flip the rows ``flip`` says; shift the augmented copies by their ``shift`` (reflect padding)."""
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if copies.any():
        size = x.shape[-1]
        padded = F.pad(x[copies], (SHIFT, SHIFT, SHIFT, SHIFT), mode="reflect")
        offsets = shift[copies].tolist()
        shifted = [p[:, dy : dy + size, dx : dx + size] for p, (dy, dx) in zip(padded, offsets, strict=True)]
        x = x.clone()
        x[copies] = torch.stack(shifted)
    return x


def augment(x: torch.Tensor, copies: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip for all; a random shift (reflect padding) too for augmented copies."""
    return apply_augment(x, copies, *augment_draws(copies, gen))


def hide_draws(n: int, share: float, gen: torch.Generator) -> torch.Tensor:
    """Which of ``n`` rows :func:`hide_quality` hides."""
    return torch.rand(n, generator=gen) < share


def apply_hide(x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    x[hidden, -1] = float(quality_table()[UNKNOWN_QUALITY])
    return x


def hide_quality(x: torch.Tensor, share: float, gen: torch.Generator) -> torch.Tensor:
    """Set the quality plane of a random ``share`` of rows to "unknown", as a PNG or WebP would come."""
    return apply_hide(x, hide_draws(len(x), share, gen))


def to_input(pixels: torch.Tensor, spec: PreprocessSpec, channels_last: bool) -> torch.Tensor:
    x = normalize(pixels, spec)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def batch_loss(
    logits: torch.Tensor,
    aux: torch.Tensor | None,
    y: torch.Tensor,
    target: torch.Tensor | None,
    mask: torch.Tensor | None,
    aux_weight: float,
    totals: tuple[int, int] | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """Cross-entropy on the labelled rows plus ``aux_weight`` x the masked soft-target BCE.

    With ``totals`` (a share of a global batch under DDP: its labelled rows and defined targets), both
    sums are divided by the global batch's counts and the loss is multiplied by ``scale`` (the world
    size): DDP's average of the ranks' gradients is then the gradient of the global batch's loss."""
    labelled = y >= 0
    if totals is not None:  # every term, even empty, so that every parameter gets a gradient on every rank
        loss = F.cross_entropy(logits.float()[labelled], y[labelled], reduction="sum") / max(totals[0], 1)
        if aux is not None and target is not None and mask is not None:
            bce = F.binary_cross_entropy_with_logits(aux.float()[mask], target[mask], reduction="sum")
            loss = loss + aux_weight * bce / max(totals[1], 1)
        return loss * scale
    loss = F.cross_entropy(logits.float()[labelled], y[labelled], reduction="sum") / max(int(labelled.sum()), 1)
    if aux is not None and target is not None and mask is not None and mask.any():
        bce = F.binary_cross_entropy_with_logits(aux.float()[mask], target[mask])
        loss = loss + aux_weight * bce
    return loss


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Split,
    spec: PreprocessSpec,
    cfg: Any,
    gen: torch.Generator,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over the balanced order; returns mean loss and accuracy on what was seen.

    Under torchrun each step is one global batch of ``cfg.batch_size``: every rank draws the batch's
    random choices, then trains on its share (training.train.distributed)."""
    model.train()
    world = distributed.world()
    device = next(model.parameters()).device
    order, copies = epoch_order(data.labels, cfg.balance, gen)
    if getattr(cfg, "epoch_size", 0):  # a fixed budget of draws per epoch, from the same balanced order
        order, copies = order[: cfg.epoch_size], copies[: cfg.epoch_size]
    steps = (len(order) + cfg.batch_size - 1) // cfg.batch_size
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    aux_weight = float(getattr(cfg, "aux_weight", 1.0))
    total_loss, correct, seen, labelled = 0.0, 0, 0, 0
    bar = tqdm(range(steps), desc=desc, mininterval=10, disable=not world.main)
    for step in bar:
        batch = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
        idx, copy = order[batch], copies[batch]
        flip, shift = augment_draws(copy, gen)
        hide = spec.quality_map and getattr(cfg, "quality_dropout", 0.0) > 0
        hidden = hide_draws(len(idx), cfg.quality_dropout, gen) if hide else None
        mine = distributed.share(len(idx), world)
        x = apply_augment(normalize(data.pixels[idx[mine]], spec), copy[mine], flip[mine], shift[mine])
        if hidden is not None:
            x = apply_hide(x, hidden[mine])
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = data.labels[idx]
        target = data.aux[idx] if data.aux is not None else None
        mask = data.aux_mask[idx] if data.aux_mask is not None else None
        # the global batch's counts: every rank has every label
        totals = (int((y >= 0).sum()), int(mask.sum()) if mask is not None else 0) if world.size > 1 else None
        y, target, mask = (t[mine].to(device) if t is not None else None for t in (y, target, mask))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(getattr(cfg, "bf16", False))):
            logits, aux = model.forward_all(x.to(device))
            loss = batch_loss(logits, aux, y, target, mask, aux_weight, totals, world.size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        distributed.average_buffers(model, len(y), len(idx))
        hits = int(((logits.argmax(1) == y) & (y >= 0)).sum())
        if world.size > 1:  # this rank's part of the global batch's loss, and of its hits
            part, hits = distributed.sum_all([loss.item() / world.size, hits])
            total_loss += part * len(idx)
            correct += int(hits)
        else:
            total_loss += loss.item() * len(y)
            correct += hits
        labelled += int((data.labels[idx] >= 0).sum())
        seen += len(idx)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    return {
        "loss": total_loss / max(seen, 1),
        "accuracy": correct / max(labelled, 1),
        "steps": steps,
        "images": seen,
    }


@torch.no_grad()
def predict_all(
    model: nn.Module, pixels: torch.Tensor, spec: PreprocessSpec, batch_size: int = 64, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (N, 2) and auxiliary outputs (N, K) or None, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    logits, aux = [], []
    for i in range(0, len(pixels), batch_size):
        out, extra = model.forward_all(to_input(pixels[i : i + batch_size], spec, channels_last).to(device))
        logits.append(out.cpu())
        if extra is not None:
            aux.append(extra.cpu())
    if not logits:
        return torch.empty((0, 2)), None
    return torch.cat(logits), (torch.cat(aux) if aux else None)


def predict(
    model: nn.Module, pixels: torch.Tensor, spec: PreprocessSpec, batch_size: int = 64, channels_last: bool = False
) -> torch.Tensor:
    """Logits (N, 2) in eval mode."""
    return predict_all(model, pixels, spec, batch_size, channels_last)[0]


def evaluate(
    model: nn.Module,
    data: Split,
    spec: PreprocessSpec,
    batch_size: int = 64,
    channels_last: bool = False,
    aux_names: list[str] | None = None,
) -> dict[str, Any]:
    """Loss and the binary metrics (accuracy, balanced accuracy, AUROC, confusion) on the labelled
    rows of a split; with auxiliary targets, how well each is matched (overall and within level)."""
    # under torchrun each rank predicts a share of the rows; all of them compute the metrics of the whole split
    mine = data.pixels[distributed.share(len(data))]
    shares = distributed.gather(predict_all(model, mine, spec, batch_size, channels_last))
    logits = torch.cat([s[0] for s in shares])
    aux = torch.cat([s[1] for s in shares if s[1] is not None]) if any(s[1] is not None for s in shares) else None
    p_useful = torch.softmax(logits, 1)[:, 1].numpy()
    y = data.labels.numpy()
    rows = y >= 0
    loss = float(F.cross_entropy(logits[rows], data.labels[rows])) if rows.any() else float("nan")
    out = {"loss": loss, **binary_metrics(y[rows], p_useful[rows])}
    out["best_threshold"] = best_threshold(y[rows], p_useful[rows])
    out["within_level_auroc"] = within_level_auroc(data.frame.loc[rows].reset_index(drop=True), y[rows], p_useful[rows])
    if aux is not None and data.aux is not None and aux_names:
        pred, frame = torch.sigmoid(aux.float()).numpy(), data.frame
        out["aux"] = aux_agreement(pred, data.aux.numpy(), data.aux_mask.numpy(), frame, aux_names)
    return out


def best_record(epoch: int, metric: str, pick: dict[str, Any], on: str, test: dict | None) -> dict[str, Any]:
    """What a checkpoint keeps of its best epoch: the choice, its threshold, its test metrics."""
    return {
        "epoch": epoch,
        "metric": metric,
        "value": pick[metric],
        "on": on,
        "threshold": pick.get("best_threshold", 0.5),
        "test": test,
    }


def format_metrics(m: dict[str, Any]) -> str:
    """One log line of :func:`evaluate`'s metrics."""
    (tn, fp), (fn, tp) = m["confusion"]
    text = (
        f"acc {m['accuracy']:.4f} bal_acc {m['balanced_accuracy']:.4f} auroc {m['auroc']:.4f} "
        f"confusion [[tn {tn} fp {fp}] [fn {fn} tp {tp}]] n {m['n']}"
    )
    if "within_level_auroc" in m:
        text += f" within-level auroc {m['within_level_auroc']['mean']:.3f}"
    for name, agree in m.get("aux", {}).items():
        text += f" | {name} r {agree['r']:.3f} within {agree['r_within_level']:.3f}"
    return text
