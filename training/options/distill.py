"""``image-utility distill``'s options, parsed and checked without importing torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.usage import Parser, UsageError, existing, in_range
from training.options import native_bf16

DESCRIPTION = "teach the ResNet-18 the teacher-backed variant's answers on fresh views (function matching)"
TEACHER = "a model folder of the teacher-backed variant (e.g. models/utility-classification-lite0)"
EPILOG = (
    "Photos: every folder given, searched recursively; only the sources the label stage puts in its train "
    "split (same hash, --split-seed, --test-fraction) are used, so the labelled test photos stay unseen. "
    "The run checkpoints every --eval-every steps; --resume auto continues it (a larger --steps extends it)."
)


def get_parser() -> argparse.ArgumentParser:
    p = Parser(prog="image-utility distill", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("photos", type=Path, nargs="*", help="folders of pristine photos (the label stage's IMAGES_DIR)")
    p.add_argument("--teacher", type=Path, default=Path("models/utility-classification-lite0"), help=TEACHER)
    p.add_argument("--output-dir", type=Path, default=Path("runs/distill"), help="checkpoints, history, curves")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps in the whole run (cosine schedule)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="decay of an exponential moving average of the weights, validated and exported instead (0: off)",
    )
    p.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    p.add_argument("--temperature", type=float, default=4.0, help="of the utility logit's soft target")
    p.add_argument("--imagenet-weight", type=float, default=0.5, help="weight of the ImageNet-logit KL term")
    p.add_argument("--size", type=int, default=128, help="student input side (both views)")
    p.add_argument(
        "--mixup", type=float, default=0.15, help="probability that a view blends in a second photo (function matching)"
    )
    p.add_argument("--crop-area", type=float, default=0.3, help="smallest random crop, as a share of the photo's area")
    p.add_argument("--val-photos", type=int, default=60, help="held-out photos for validation (whole photos)")
    p.add_argument(
        "--val-labels",
        type=Path,
        action="append",
        help="a label-stage output folder of held-out photos (repeatable): validation on its labelled rows, "
        "best.pt chosen on label AUROC; those photos are never views and --val-photos is ignored",
    )
    p.add_argument(
        "--link-val-photos",
        type=Path,
        default=None,
        help="write links to the --val-photos held-out photos into this folder and exit (to label them: "
        "image-utility label DIR ..., then --val-labels)",
    )
    p.add_argument("--eval-every", type=int, default=250, help="validate and checkpoint every N steps")
    p.add_argument("--split-seed", type=int, default=0, help="the label stage's --seed (its train/test split)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="the label stage's --test-fraction")
    p.add_argument("--seed", type=int, default=0, help="seeds the views, the student and the validation photos")
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start the student from a train checkpoint (best.pt): its trunk and heads where their shapes fit",
    )
    p.add_argument("--resume", default=None, help="'auto' (OUTPUT_DIR/checkpoint.pt when there) or a checkpoint")
    p.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="bfloat16 autocast for teacher and student; auto: on where the CPU has native bf16 (AVX512-BF16, AMX)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    p.add_argument("--workers", type=int, default=1, help="processes drawing views")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps of this invocation")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def check(args: argparse.Namespace) -> None:
    """Refuse values that cannot work, naming the option (:class:`UsageError`)."""
    if not args.photos and args.resume is None:
        raise UsageError("PHOTOS: give at least one folder of photos (or --resume a run that names them)")
    for path in args.photos:
        if not path.is_dir():
            raise UsageError(f"PHOTOS {str(path)!r} is not a folder; expected a folder of pristine photos")
    existing("--teacher", args.teacher, TEACHER)
    from training.manifest import ManifestError, find_manifest  # pandas, not torch: still fast to refuse

    for path in args.val_labels or []:
        try:
            find_manifest(path)
        except ManifestError:
            msg = f"--val-labels {str(path)!r} holds no manifest; expected an 'image-utility label' --out"
            raise UsageError(msg) from None
    if args.init is not None:
        existing("--init", args.init, "a train checkpoint file (best.pt)")
    if args.resume is not None and args.resume != "auto":
        existing("--resume", Path(args.resume), "a checkpoint file (checkpoint.pt) or 'auto'")
    for name, low in (("steps", 1), ("batch_size", 2), ("size", 32), ("eval_every", 1), ("threads", 1)):
        in_range(f"--{name.replace('_', '-')}", getattr(args, name), low)
    for name in ("warmup", "workers", "weight_decay", "imagenet_weight", "val_photos"):
        in_range(f"--{name.replace('_', '-')}", getattr(args, name), 0)
    in_range("--max-steps", args.max_steps, 1)
    in_range("--lr", args.lr, 0, strict=True)
    in_range("--ema", args.ema, 0, 0.99999)
    in_range("--temperature", args.temperature, 0, strict=True)
    in_range("--mixup", args.mixup, 0, 1)
    in_range("--crop-area", args.crop_area, 0.01, 1)
    in_range("--test-fraction", args.test_fraction, 0, 0.9)


def parse(argv: list[str] | None) -> argparse.Namespace:
    args = get_parser().parse_args(argv)
    check(args)
    args.bf16 = native_bf16() if args.bf16 == "auto" else args.bf16 == "on"
    return args
