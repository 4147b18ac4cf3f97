"""What a distillation run writes for ``image-utility export``: ``best.pt`` and ``checkpoint.pt`` read as a
``train`` run's ``best.pt`` does (the auxiliary ImageNet head dropped), and what its model card says of the data.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.distill.validation import ValSet, selection
from training.distill.views import KINDS, RANGES


def export_args(args: argparse.Namespace) -> dict[str, Any]:
    """The training arguments ``image-utility export`` and the model card read, in ``train``'s names."""
    return {
        "stage": "distill",
        "task": "classification",
        "manifest": [],
        "label_column": "label",
        "val_fraction": 0.0,
        "seed": args.seed,
        "backbone": "resnet18",
        "pretrained": False,
        "native_crop": True,
        "quality_map": True,
        "size": args.size,
        "optimizer": "adamw",
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "schedule": "cosine",
        "epochs": args.steps,
        "batch_size": args.batch_size,
        "balance": "none",
        "bf16": args.bf16,
        "threads": args.threads,
        "teacher": str(args.teacher),
        "temperature": args.temperature,
        "imagenet_weight": args.imagenet_weight,
        "warmup": args.warmup,
        "ema": getattr(args, "ema", 0.0),
    }


def data_summary(
    args: argparse.Namespace, photos: tuple[list[Path], list[Path]], val: ValSet, counts: dict[str, int]
) -> dict[str, Any]:
    """What the model card says of the data: views seen (with the teacher's decisions), photos per split.

    ``val_sources`` names the held-out photos, so ``export`` fits its threshold and quality stack on their labels.
    """
    y = val.utility.numpy() > val.threshold_logit
    unlabelled = 0
    if val.label is not None:
        known = np.isfinite(val.label.numpy())
        y, unlabelled = val.label.numpy()[known] > 0.5, int((~known).sum())
    levels = {name: [f"{low}-{high}"] for name, (low, high) in RANGES.items()}
    return {
        "label_column": f"teacher {args.teacher.name}",
        "val_labels": "label" if val.label is not None else f"teacher {args.teacher.name}",
        "splits": {
            "train": {
                "total": counts["views"],
                "useful": counts["useful"],
                "non_useful": counts["views"] - counts["useful"],
                "unlabelled": 0,
            },
            "val": {
                "total": len(y) + unlabelled,
                "useful": int(y.sum()),
                "non_useful": int((~y).sum()),
                "unlabelled": unlabelled,
            },
        },
        "sources": {"train": len(photos[0]), "val": len(photos[1])},
        "val_sources": sorted(set(val.source) or {p.name for p in photos[1]}),
        "distortions": {**levels, "pristine": ["-"], "mix": ["blur/noise/downscale then JPEG 10-95"]},
        "view_kinds": dict(KINDS),
        "other_columns": [],
        "collections": [p.name for p in args.photos],
    }


EXPORTED = {"optimizer": None, "scheduler": None, "aux_targets": [], "side_files": {}}  # as train's best.pt


def export_checkpoint(student: torch.nn.Module, state: dict[str, Any]) -> dict[str, Any]:
    """``best.pt``: the utility network alone (no ImageNet head), as ``train`` writes it."""
    return {"model": utility_weights(student.state_dict()), **EXPORTED, **state}


def last_step(full: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint.pt`` (the last step, not the best on validation) in ``best.pt``'s form, its threshold the
    last validation's: what ``export RUN/checkpoint.pt`` reads, e.g. at the end of an annealed schedule."""
    value, on, threshold = selection(full["history"][-1]["val"])
    best = {"epoch": full["epoch"], "metric": "auroc", "value": value, "on": on, "threshold": threshold, "test": None}
    weights = full["model_full"] if full.get("model_ema") is None else full["model_ema"]
    return {**full, "model": utility_weights(weights), **EXPORTED, "best": best}


def utility_weights(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in weights.items() if not k.startswith("aux.")}  # aux: the ImageNet head
