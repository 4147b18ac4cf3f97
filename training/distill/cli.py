"""``image-utility distill``: the teacher-backed variant's answers into the ResNet-18, on fresh views.

Writes into ``--output-dir``: ``checkpoint.pt`` (student, optimizer, step, history; every
``--eval-every`` steps, atomically), ``best.pt`` (the best validation AUROC, against the labels of
``--val-labels`` or else the teacher's decisions, in the format ``image-utility export`` reads: the
auxiliary ImageNet head dropped),
``val.pt`` (the validation views and the teacher's answers, built once), ``history.json`` and
``curve.png``. ``--resume auto`` continues a run; views are seeded by (seed, step), so a resumed run
draws new ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.optim.swa_utils import AveragedModel

from app.usage import UsageError
from training.distill.checkpoint import data_summary, export_args, export_checkpoint
from training.distill.loop import build_student, lr_at, student_spec, train_step
from training.distill.teacher import VariantTeacher, check_parity
from training.distill.validation import ValSet, format_val, load_valset, selection, validate
from training.distill.views import ViewSettings, ViewStream, as_inputs
from training.files import plain_args, remove_stale_temporaries, save_atomic, write_json
from training.label.cli import list_sources
from training.label.rows import assign_splits
from training.manifest import read_manifests
from training.options import explicit_flags, setup_logging
from training.options.distill import get_parser, parse
from training.provenance import git_commit
from training.train.curves import save_figure
from training.train.dataset import normalize
from training.train.model import load_matching

log = logging.getLogger("training.distill")
RUNTIME = ("resume", "threads", "workers", "max_steps", "verbose", "output_dir", "bf16")


def resolve_resume(args: argparse.Namespace, given: set[str]) -> dict[str, Any] | None:
    """The checkpoint to continue; its arguments win except runtime flags and flags given explicitly."""
    if args.resume is None:
        return None
    path = args.output_dir / "checkpoint.pt" if args.resume == "auto" else Path(args.resume)
    if not path.is_file():
        if args.resume == "auto":
            return None
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    for key, saved in ckpt["distill_args"].items():
        if key in RUNTIME or key in given:
            continue
        setattr(args, key, _as_paths(key, saved))
    log.info("resuming %s after step %d of %d", path, ckpt["epoch"], args.steps)
    return ckpt


def _as_paths(key: str, saved: Any) -> Any:
    if key in ("photos", "val_labels") and saved is not None:
        return [Path(p) for p in saved]
    return Path(saved) if key == "teacher" else saved


def photo_splits(args: argparse.Namespace, labelled: pd.DataFrame | None) -> tuple[list[Path], list[Path]]:
    """(train, val) photos: each folder's label-stage train split, less the labelled validation photos
    (matched on file name) or else ``--val-photos`` seeded ones."""
    train = []
    for folder in args.photos:
        sources = list_sources(folder, None)
        split = assign_splits(sources, args.split_seed, args.test_fraction)
        train += [folder / s for s in sources if split[s] == "train"]
    if labelled is not None:
        names = {Path(s).name for s in labelled["source"].astype(str)}
        val = [p for p in train if p.name in names]
    else:
        order = np.random.default_rng(args.seed).permutation(len(train))
        val = [train[i] for i in order[: args.val_photos]]
    held = set(val)
    return [p for p in train if p not in held], val


def plot(history: list[dict[str, Any]], path: Path) -> None:
    """Loss, and the student against the teacher on validation, per checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(steps, [h["train"]["loss"] for h in history], label="train loss")
    for key, label in (
        ("auroc", "AUROC vs teacher"),
        ("r", "r (utility logit)"),
        ("r_within_level", "r within JPEG 4-6"),
    ):
        b.plot(steps, [h["val"][key] for h in history], label=label)
    labelled = [h for h in history if "labels" in h["val"]]
    if labelled:
        b.plot([h["epoch"] for h in labelled], [h["val"]["labels"]["auroc"] for h in labelled], label="AUROC vs labels")
    a.set(xlabel="step", title="distillation loss")
    b.legend()
    b.set(xlabel="step", title="validation: student vs teacher (and labels)")
    save_figure(fig, path)


def views(args: argparse.Namespace, photos: list[Path], specs: tuple, start: int) -> torch.utils.data.DataLoader:
    settings = ViewSettings(min_area=args.crop_area, mixup_p=args.mixup)
    stream = ViewStream(photos, specs, args.seed, start, settings)
    return torch.utils.data.DataLoader(
        stream, batch_size=args.batch_size, num_workers=args.workers, prefetch_factor=4 if args.workers else None
    )


def run(args: argparse.Namespace, given: set[str], command: str) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    ckpt = resolve_resume(args, given)
    torch.manual_seed(args.seed)
    labelled = read_manifests(args.val_labels, keep_unlabelled=True) if args.val_labels else None
    train_photos, val_photos = photo_splits(args, labelled)
    if not train_photos:
        raise SystemExit("image-utility distill: no training photos in PHOTOS")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if removed := remove_stale_temporaries(args.output_dir):
        log.info("removed %d temporary files left by an interrupted run", removed)
    teacher = VariantTeacher(args.teacher, bf16=args.bf16)
    specs = (student_spec(args.size), teacher.spec)
    probe = [as_inputs(p.read_bytes(), (teacher.spec,))[0] for p in (val_photos or train_photos)[:8]]
    if probe:
        check_parity(teacher, normalize(torch.from_numpy(np.stack(probe)), teacher.spec).numpy())
    val = load_valset(args.output_dir / "val.pt", (val_photos, labelled), teacher, specs[0], args)
    log.info(
        "%d training photos, %d validation views of %d photos", len(train_photos), len(val.level), len(set(val.source))
    )
    student = build_student()
    if args.init is not None and ckpt is None:  # e.g. the shipped predictor's run: the level is known from step 0
        load_matching(student, torch.load(args.init, map_location="cpu", weights_only=False)["model"], str(args.init))
    student = student.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    state: dict[str, Any] = {"history": [], "best": None, "wall_s": 0.0, "commit": git_commit(), "command": command}
    counts = {"views": 0, "useful": 0}
    step = 0
    if ckpt is not None:
        student.load_state_dict(ckpt["model_full"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state.update({k: ckpt[k] for k in ("history", "best", "wall_s", "commit") if k in ckpt})
        state["command"] = "\n".join(filter(None, [ckpt.get("command"), command]))
        counts, step = ckpt["counts"], ckpt["epoch"]
    ema = averaged(student, args.ema, ckpt)
    student.train()
    end = args.steps if args.max_steps is None else min(args.steps, step + args.max_steps)
    totals: dict[str, float] = {}
    since, t0 = 0, time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=end - step, desc="distill", unit="step")
    for batch in views(args, train_photos, specs, step):
        if step >= end:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args)
        parts = train_step(student, teacher, optimizer, batch, specs, args)
        if ema is not None:
            ema.update_parameters(student)
        for k, v in parts.items():
            if k != "useful":
                totals[k] = totals.get(k, 0.0) + v
        counts["views"] += len(batch[0])
        counts["useful"] += int(parts.pop("useful"))
        step, since = step + 1, since + 1
        bar.update()
        bar.set_postfix(loss=f"{parts['loss']:.3f}")
        if step % args.eval_every == 0 or step == end:
            train = {k: v / since for k, v in totals.items()}
            seconds = time.perf_counter() - t0
            train["views_per_s"] = totals["views_per_step"] / seconds
            state["wall_s"] += seconds
            save((student, ema), optimizer, step, args, state, counts, train, val, seconds, (train_photos, val_photos))
            totals, since, t0 = {}, 0, time.perf_counter()
    bar.close()
    summary = {k: state[k] for k in ("best", "wall_s", "commit")}
    write_json(args.output_dir / "summary.json", summary)
    return summary


def averaged(student: torch.nn.Module, decay: float, ckpt: dict[str, Any] | None) -> AveragedModel | None:
    """The exponential moving average of the student's weights and BatchNorm statistics (as torchvision's
    references keep it), validated and exported in the student's place; resumed, or started at the student."""
    if not decay:
        return None
    ema = AveragedModel(student, multi_avg_fn=ema_update(decay), use_buffers=True)
    if ckpt is not None and ckpt.get("model_ema") is not None:
        ema.module.load_state_dict(ckpt["model_ema"])
        ema.n_averaged.fill_(ckpt.get("ema_updates", 1))
    return ema


def ema_update(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """In-place EMA step with timm's warm-up, decay min(decay, (1 + n) / (10 + n)) after n updates: early on
    the average follows the student instead of keeping the first weights for thousands of steps."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():  # grouped by dtype: BatchNorm's step counters are copied
            torch._foreach_copy_(averaged, current)
            return
        done = float(n)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + done) / (10.0 + done)))

    return update


def save(
    nets: tuple[torch.nn.Module, AveragedModel | None],
    optimizer: torch.optim.Optimizer,
    step: int,
    args: argparse.Namespace,
    state: dict[str, Any],
    counts: dict[str, int],
    train: dict[str, float],
    val: ValSet,
    seconds: float,
    photos: tuple[list[Path], list[Path]],
) -> None:
    """Validate; write best.pt when better, then history, curve and checkpoint.pt (last, so a kill
    before it replays these steps and best.pt never runs ahead of the checkpoint a resume takes)."""
    student, ema = nets
    scored = student if ema is None else ema.module
    metrics = validate(scored, val, student_spec(args.size), args.bf16)
    log.info(
        "step %d/%d: loss %.4f, %.1f views/s | val %s",
        step,
        args.steps,
        train["loss"],
        train["views_per_s"],
        format_val(metrics),
    )
    row = {"epoch": step, "lr": lr_at(step - 1, args), "train": train, "val": metrics, "seconds": seconds}
    state["history"].append(row)
    value, on, threshold = selection(metrics)
    best = state["best"]
    better = best is None or best.get("on") != on or value > best["value"]  # labels, once given, outrank
    if better:
        state["best"] = {"epoch": step, "metric": "auroc", "value": value, "on": on, "threshold": threshold}
        state["best"]["test"] = None
    state["data"] = data_summary(args, photos, val, counts)
    state["spec"] = student_spec(args.size).to_json()
    common = {**state, "epoch": step, "args": export_args(args), "rng": torch.get_rng_state()}
    if better:
        save_atomic(args.output_dir / "best.pt", partial(torch.save, export_checkpoint(scored, common)))
    write_json(args.output_dir / "history.json", state["history"])
    plot(state["history"], args.output_dir / "curve.png")
    full = {
        **common,
        "model_full": student.state_dict(),
        "model_ema": None if ema is None else ema.module.state_dict(),
        "ema_updates": 0 if ema is None else int(ema.n_averaged),
        "optimizer": optimizer.state_dict(),
        "counts": counts,
        "distill_args": plain_args(args),
    }
    save_atomic(args.output_dir / "checkpoint.pt", partial(torch.save, full))


def link_val_photos(args: argparse.Namespace) -> int:
    """Links to the seeded held-out photos in one folder, the input of ``image-utility label``."""
    _, val = photo_splits(args, None)
    if len({p.name for p in val}) < len(val):
        raise UsageError("--link-val-photos: two held-out photos share a file name; give the folders apart")
    args.link_val_photos.mkdir(parents=True, exist_ok=True)
    for path in val:
        link = args.link_val_photos / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    log.info("%d held-out photos linked in %s", len(val), args.link_val_photos)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    setup_logging(args.verbose)
    if args.link_val_photos is not None:
        return link_val_photos(args)
    summary = run(args, explicit_flags(get_parser(), argv), "image-utility distill " + shlex.join(argv))
    sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    return 0
