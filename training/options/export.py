"""``image-utility export``'s options, parsed and checked without importing torch."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from app.usage import Parser, UsageError, existing, in_range
from training.options import manifest_given

DESCRIPTION = "checkpoint -> ONNX model folder the service loads"
CHECKPOINT = "a training run folder (holding best.pt) or a checkpoint file"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def get_parser() -> argparse.ArgumentParser:
    p = Parser(prog="image-utility export", description=DESCRIPTION)
    p.add_argument("checkpoint", type=Path, help="a training run folder (uses best.pt) or a checkpoint file")
    p.add_argument("--name", default=None, help="model folder name (default: utility-<task>)")
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--version", default=None, help="model version string (default: <date>-<commit>)")
    p.add_argument(
        "--manifest",
        type=Path,
        action="append",
        default=None,
        help="label manifest (repeatable; default: the ones trained on)",
    )
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--tolerance", type=float, default=1e-3, help="max |onnxruntime - PyTorch| on logits")
    p.add_argument("--parity-images", type=int, default=32, help="real test images for the parity check")
    p.add_argument("--max-batch-size", type=int, default=64, help="Triton max_batch_size")
    p.add_argument("--int8", action="store_true", help="also build a static int8 model and compare")
    p.add_argument("--calib-images", type=int, default=256, help="training images to calibrate int8")
    p.add_argument("--calibration", choices=("minmax", "percentile", "entropy"), default="minmax")
    p.add_argument("--int8-max-drop", type=float, default=1.0, help="accuracy points int8 may lose for --ship auto")
    p.add_argument("--ship", choices=("auto", "fp32", "int8"), default="auto", help="which model becomes model.onnx")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="the model's default decision threshold (default: the one chosen on validation)",
    )
    p.add_argument(
        "--stack-quality",
        action="store_true",
        help="stack the network's logit with the JPEG header's log quality, fitted on the validation photos",
    )
    p.add_argument("--note", action="append", default=[], help="extra line for the card's Limits (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def check(args: argparse.Namespace) -> None:
    """Refuse values that cannot work, naming the option (:class:`UsageError`)."""
    existing("CHECKPOINT", args.checkpoint, CHECKPOINT)
    if args.checkpoint.is_dir() and not (args.checkpoint / "best.pt").is_file():
        raise UsageError(f"CHECKPOINT {str(args.checkpoint)!r} holds no best.pt; expected {CHECKPOINT}")
    if args.name is not None and not NAME.fullmatch(args.name):
        raise UsageError(f"--name {args.name!r}: allowed are letters, digits, '.', '_' and '-'")
    for manifest in args.manifest or []:
        manifest_given("--manifest", manifest, "a labelling OUT_DIR or a manifest file")
    if args.models_dir.exists() and not args.models_dir.is_dir():
        raise UsageError(f"--models-dir {str(args.models_dir)!r} is a file; expected a folder of model folders")
    in_range("--opset", args.opset, 17, 23)
    in_range("--tolerance", args.tolerance, 0, strict=True)
    for name in ("parity_images", "max_batch_size", "calib_images", "threads"):
        in_range(f"--{name.replace('_', '-')}", getattr(args, name), 1)
    in_range("--int8-max-drop", args.int8_max_drop, 0, 100)
    in_range("--threshold", args.threshold, 0, 1, strict=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    args = get_parser().parse_args(argv)
    check(args)
    return args
