"""``image-utility train``: fit ResNet-18 to a label manifest, evaluate every epoch, checkpoint.

Every epoch writes ``checkpoint.pt`` (model, optimizer, scheduler, epoch, args, RNG state, history)
atomically into ``--output-dir``; ``best.pt`` holds the best epoch by ``--select-metric`` on the
validation split (a held-out part of the training sources), or on test when there is none.
``--resume`` continues exactly: each epoch's shuffling and augmentation depend only on (seed, epoch).
Under ``torchrun`` the same command trains with DDP on every process (training.train.distributed):
the same global batches, rank 0 writing the files; a checkpoint resumes on any number of processes.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from app.preprocess import PreprocessSpec
from training.files import plain_args, remove_stale_temporaries, save_atomic, write_json
from training.manifest import read_manifests, side_files
from training.options import explicit_flags, native_bf16, setup_logging
from training.options.train import get_parser, parse
from training.provenance import git_commit
from training.train import distributed
from training.train.backbone import LITE_MEAN, LITE_STD
from training.train.curves import plot_history
from training.train.dataset import load_split, split_validation, summarize
from training.train.epoch import (
    best_record,
    epoch_generator,
    evaluate,
    format_metrics,
    seed_everything,
    train_one_epoch,
)
from training.train.head import run_head, test_head
from training.train.model import build_model, load_matching
from training.train.targets import defined_targets

log = logging.getLogger("training.train")

# Flags that change nothing in the result: taken from the command line even when resuming.
RUNTIME = (
    "resume",
    "test_only",
    "threads",
    "workers",
    "cache_dir",
    "output_dir",
    "verbose",
    "max_steps",
    "test_each_epoch",
    "device",
)
SPEC_FIELDS = ("size", "resize", "interpolation", "jpeg_draft", "native_crop", "quality_map")


def make_spec(args: argparse.Namespace) -> PreprocessSpec:
    lite = getattr(args, "backbone", "resnet18") != "resnet18"
    norm = {"mean": LITE_MEAN, "std": LITE_STD} if lite else {}
    return PreprocessSpec(
        **norm,
        size=args.size,
        resize=args.resize,
        interpolation=args.interpolation,
        jpeg_draft=args.jpeg_draft,
        native_crop=getattr(args, "native_crop", False),
        quality_map=getattr(args, "quality_map", False),
    )


def make_optimizer(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    if getattr(args, "optimizer", "sgd") == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, args: argparse.Namespace) -> torch.optim.lr_scheduler.LRScheduler:
    if args.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(args.epochs, 1))
    if args.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.step_size, gamma=args.gamma)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def resolve_resume(args: argparse.Namespace, given: set[str]) -> dict[str, Any] | None:
    """Load the checkpoint to resume. Its args win, except runtime flags and flags given explicitly."""
    if args.resume is None:
        return None
    path = args.output_dir / "checkpoint.pt" if str(args.resume) == "auto" else args.resume
    if not path.is_file():
        if str(args.resume) == "auto" and not args.test_only:
            return None
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    for key, saved in ckpt["args"].items():
        if key in RUNTIME or not hasattr(args, key):
            continue
        if key == "manifest":
            saved = [Path(m) for m in ([saved] if isinstance(saved, str) else saved or [])]
        if key in given and getattr(args, key) != saved:
            log.warning("--%s %s overrides the checkpoint's %s", key.replace("_", "-"), getattr(args, key), saved)
        else:
            setattr(args, key, saved)
    log.info("resuming %s after epoch %d", path, ckpt["epoch"])
    return ckpt


def new_state(
    args: argparse.Namespace, df: Any, spec: PreprocessSpec, aux_names: list[str], command: str
) -> dict[str, Any]:
    """What a run's checkpoints carry besides the weights (filled in epoch by epoch)."""
    return {
        "history": [],
        "best": None,
        "wall_s": 0.0,
        "spec": spec.to_json(),
        "data": summarize(df, args.label_column),
        "side_files": side_files(args.manifest[0]),
        "aux_targets": aux_names,
        "commit": git_commit(),
        "command": command,
    }


def checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    epoch: int,
    args: argparse.Namespace,
    state: dict[str, Any],
) -> dict[str, Any]:
    """The checkpoint file's content (a frozen-trunk head, retrained in seconds, keeps no optimizer)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer else None,
        "scheduler": scheduler.state_dict() if scheduler else None,
        "epoch": epoch,
        "args": plain_args(args),
        "rng": torch.get_rng_state(),
        **state,
    }


def is_better(metrics: dict[str, Any], best: dict[str, Any] | None, key: str) -> bool:
    # a resume with another --select-metric starts the race again: old epochs' weights are gone
    return best is None or best.get("metric", key) != key or metrics[key] > best["value"]


def run(args: argparse.Namespace, given: set[str] | None = None, command: str = "") -> dict[str, Any]:
    """Train (or evaluate with --test-only); returns the final state written to summary.json."""
    torch.set_num_threads(args.threads)
    if getattr(args, "bf16", False) and not native_bf16():
        log.warning("--bf16 on a CPU without native bfloat16: torch emulates it, far slower than fp32")
    world, device = distributed.world(), distributed.device_for(getattr(args, "device", "cpu"))
    ckpt = resolve_resume(args, given or set())
    if not args.manifest:
        raise SystemExit("image-utility train: a manifest is needed (or --resume a checkpoint that names one)")
    seed_everything(args.seed)
    spec = make_spec(args)
    aux = getattr(args, "aux", False)
    df = read_manifests(args.manifest, args.label_column, keep_unlabelled=aux)
    df = split_validation(df, args.val_fraction, args.seed)
    aux_names = defined_targets(df) if aux else []
    if not aux_names:  # nothing teaches on the dropped rows
        df = df.loc[df["label"] >= 0].reset_index(drop=True)
    if getattr(args, "backbone", "resnet18") != "resnet18":
        if args.test_only:  # the checkpoint's head, not a new one
            return {"test": test_head(ckpt, df, spec, args)}
        state = new_state(args, df, spec, [], command)
        return run_head(args, df, spec, state, lambda m, e, a, s: checkpoint(m, None, None, e, a, s))
    cache = args.cache_dir or args.output_dir.parent / "cache"
    names = [s for s in ("train", "val", "test") if (df["split"] == s).any()]
    with distributed.leader_first():  # one process per machine decodes into the pixel cache, the others read it
        splits = {s: load_split(df, s, spec, cache, args.workers, aux_names) for s in names}
    model = build_model(args.pretrained and ckpt is None, spec.views, len(aux_names), spec.quality_map)
    if args.init and ckpt is None:
        load_matching(model, torch.load(args.init, map_location="cpu", weights_only=False)["model"], str(args.init))
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    optimizer = make_optimizer(model, args)
    scheduler = make_scheduler(optimizer, args)
    state = new_state(args, df, spec, aux_names, command)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and scheduler.T_max != args.epochs:
            log.warning("cosine schedule stretched from %d to %d epochs", scheduler.T_max, args.epochs)
            scheduler.T_max = max(args.epochs, 1)
        torch.set_rng_state(ckpt["rng"])
        state.update({k: ckpt[k] for k in ("history", "best", "wall_s", "command", "commit") if k in ckpt})
        if given and given - set(RUNTIME):  # a resume that changes the run (--epochs ...) is part of its recipe
            state["command"] = "\n".join(filter(None, [ckpt.get("command"), command]))
    if args.test_only:
        metrics = evaluate(model, splits["test"], spec, channels_last=args.channels_last, aux_names=aux_names)
        log.info("test: %s", format_metrics(metrics))
        return {"test": metrics}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if world.main and (removed := remove_stale_temporaries(args.output_dir)):
        log.info("removed %d temporary files left by an interrupted run", removed)
    trainee = distributed.wrap(model, device)  # DDP under torchrun; model itself with one process
    for epoch in range(len(state["history"]) + 1, args.epochs + 1):
        t0 = time.perf_counter()
        gen = epoch_generator(args.seed, epoch)
        lr = optimizer.param_groups[0]["lr"]
        row = {
            "epoch": epoch,
            "lr": lr,
            "processes": world.size,
            "train": train_one_epoch(
                trainee, optimizer, splits["train"], spec, args, gen, desc=f"epoch {epoch}/{args.epochs}"
            ),
        }
        scheduler.step()
        chooser = "val" if "val" in splits else "test"
        row[chooser] = evaluate(model, splits[chooser], spec, channels_last=args.channels_last, aux_names=aux_names)
        log.info("epoch %d %s: %s", epoch, chooser, format_metrics(row[chooser]))
        pick = row[chooser]
        better = is_better(pick, state["best"], args.select_metric)
        if "test" in splits and "test" not in row and (args.test_each_epoch or better or epoch == args.epochs):
            row["test"] = evaluate(model, splits["test"], spec, channels_last=args.channels_last, aux_names=aux_names)
            log.info("epoch %d test: %s", epoch, format_metrics(row["test"]))
        row["seconds"] = time.perf_counter() - t0
        state["wall_s"] += row["seconds"]
        state["history"].append(row)
        if better:
            state["best"] = best_record(
                epoch, args.select_metric, pick, "val" if "val" in row else "test", row.get("test")
            )
        log.info(
            "epoch %d: train loss %.4f, %.0f s (%.1f img/s)%s",
            epoch,
            row["train"]["loss"],
            row["seconds"],
            row["train"]["images"] / row["seconds"],
            ", best so far" if better else "",
        )
        # checkpoint.pt last: a kill before it replays this epoch (deterministically), so best.pt
        # and history.json can never lag behind the checkpoint a resume starts from
        # (rank 0 alone: every rank holds the same weights, metrics and history)
        if world.main:
            ckpt = checkpoint(model, optimizer, scheduler, epoch, args, state)
            if better:
                save_atomic(args.output_dir / "best.pt", partial(torch.save, ckpt))
            write_json(args.output_dir / "history.json", state["history"])
            plot_history(state["history"], args.output_dir / "curve.png")
            save_atomic(args.output_dir / "checkpoint.pt", partial(torch.save, ckpt))
        distributed.barrier()
    if world.main:
        summary = {k: state[k] for k in ("best", "wall_s", "data", "commit")}
        write_json(args.output_dir / "summary.json", summary)
    distributed.barrier()
    return state


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    setup_logging(args.verbose)
    argv = sys.argv[1:] if argv is None else argv
    world = distributed.init(distributed.device_for(args.device))  # a world of 1 without torchrun
    try:
        result = run(args, explicit_flags(get_parser(), argv), "image-utility train " + shlex.join(argv))
    finally:
        distributed.close()
    if args.test_only and world.main:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0
