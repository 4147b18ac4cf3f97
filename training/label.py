"""``image-utility label``: pristine photos -> distorted images + a labelled manifest (paper, sec. III-IV).

    image-utility label IMAGES_DIR --task classification --ground-truth imagenet-wnid --out OUT
    image-utility label IMAGES_DIR --task detection --ground-truth coco:instances.json --out OUT
    image-utility label merge SHARD_DIR... --out OUT
    image-utility label list

Resumable: rerun the same command after an interruption and it continues where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from app.usage import Parser, UsageError
from training.utility import RULES, UtilityRule

logger = logging.getLogger("training.label")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
DEFAULT_LABELERS = {
    "classification": "efficientnet-lite0,efficientnet-lite1,efficientnet-lite2",
    "detection": "hog-people,haar-face,mtcnn-face",
}


def get_parser() -> argparse.ArgumentParser:
    p = Parser(prog="image-utility label", description=__doc__.split("\n\n")[0])
    p.add_argument("images_dir", type=Path, help="folder of pristine photos (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output folder (images/, parts/, manifest.csv)")
    p.add_argument("--task", choices=("classification", "detection"), default="classification")
    p.add_argument("--labelers", help="comma-separated names (see 'image-utility label list'); default per task")
    p.add_argument("--ground-truth", default=None, help="imagenet-wnid | coco:PATH; default: pristine decision")
    p.add_argument(
        "--distortions", default="jpeg", help="comma-separated: jpeg, jpeg-hq, pristine, blur, noise, downscale"
    )
    p.add_argument(
        "--levels",
        default="1-9",
        help="levels to produce, e.g. 1-9 or 1,3,5 (1 = mildest; each distortion makes those it has)",
    )
    p.add_argument("--limit", type=int, default=None, help="take the first N sources in sorted order")
    p.add_argument("--only-split", choices=("train", "test"), help="label only the sources of this split")
    p.add_argument("--shard", default=None, help="i/N: label the sources whose index is i modulo N")
    p.add_argument("--seed", type=int, default=0, help="seeds the split and the noise")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (torch labelers)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and OpenCV")
    p.add_argument("--allow-download", action="store_true", help="let torchvision download missing weights")
    g = p.add_argument_group("labelling rule (stored in run.json and manifest.json)")
    g.add_argument("--rule", choices=RULES, default=UtilityRule.name)
    g.add_argument("--t-high", type=float, default=UtilityRule.t_high, help="paper rule: T_H")
    g.add_argument("--t-low", type=float, default=UtilityRule.t_low, help="paper rule: T_L")
    g.add_argument("--r-high", type=float, default=UtilityRule.r_high, help="relative rule: useful if phi >= r_H*phi'")
    g.add_argument("--r-low", type=float, default=UtilityRule.r_low, help="relative rule: non-useful if phi < r_L*phi'")
    g.add_argument("--phi-rec", type=float, default=UtilityRule.phi_rec, help="eq. 2 recognition threshold")
    g.add_argument("--det-conf", type=float, default=UtilityRule.det_conf)
    g.add_argument("--det-iou", type=float, default=UtilityRule.det_iou)
    g.add_argument("--combine", choices=("unanimity", "majority"), default="unanimity")
    g.add_argument("--quorum", type=int, default=1, help="labelers the source must count for to get a label")
    return p


def merge_parser() -> argparse.ArgumentParser:
    p = Parser(prog="image-utility label merge", description="join shard outputs")
    p.add_argument("shards", type=Path, nargs="+", help="shard output folders (or one shared folder)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--partial",
        action="store_true",
        help="while sources are missing, write the finished ones as partial-<done>-of-<all>.csv",
    )
    return p


def parse_levels(text: str) -> tuple[int, ...]:
    if "-" in text:
        lo, hi = (int(x) for x in text.split("-"))
        return tuple(range(lo, hi + 1))
    return tuple(int(x) for x in text.split(","))


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    i, n = (int(x) for x in text.split("/"))
    if not 0 <= i < n:
        raise ValueError(f"--shard must be i/N with 0 <= i < N, got {text}")
    return i, n


def list_sources(images_dir: Path, limit: int | None) -> list[str]:
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir} is not a folder")
    found = sorted(
        p.relative_to(images_dir).as_posix()
        for p in images_dir.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
    return found[:limit] if limit is not None else found


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    from training.distortions import get_distortion, levels_of
    from training.labelers import LABELERS

    labelers = (args.labelers or DEFAULT_LABELERS[args.task]).split(",")
    for name in labelers:
        if name not in LABELERS:
            raise ValueError(f"unknown labeler {name!r}; known: {', '.join(LABELERS)}")
        if LABELERS[name].task != args.task:
            raise ValueError(f"{name} is a {LABELERS[name].task} labeler, not {args.task}")
    distortions = args.distortions.split(",")
    levels = parse_levels(args.levels)
    for name in distortions:
        levels_of(name, levels)
    rule = UtilityRule(
        args.rule, args.t_high, args.t_low, args.r_high, args.r_low, args.phi_rec, args.det_conf, args.det_iou
    )
    return {
        "task": args.task,
        "labelers": labelers,
        "ground_truth": args.ground_truth,
        "distortions": distortions,
        "levels": list(levels),
        "params": {d: list(get_distortion(d).levels) for d in distortions},
        "seed": args.seed,
        "test_fraction": args.test_fraction,
        "limit": args.limit,
        "only_split": args.only_split,
        "rule": rule.to_dict(),
        "combine": args.combine,
        "quorum": args.quorum,
        "images_dir": str(args.images_dir.resolve()),
    }


def setup(threads: int | None) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if threads:
        import cv2
        import torch

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from training.groundtruth import GroundTruthError
    from training.labelers import WeightsNotFoundError
    from training.outdir import OutDirError

    try:
        if argv and argv[0] == "merge":
            args = merge_parser().parse_args(argv[1:])
            setup(None)
            from training.outdir import merge

            merge(args.shards, args.out, args.partial)
            return 0
        if argv and argv[0] == "list":
            from training.labelers import LABELERS

            for entry in LABELERS.values():
                sys.stdout.write(f"{entry.name:<36} {entry.task:<15} weights: {entry.source}\n")
            return 0
        args = get_parser().parse_args(argv)
        setup(args.threads)
        from training.run import run

        return run(args, settings_from(args), parse_shard(args.shard))
    except UsageError:
        raise  # image-utility's one line
    except (WeightsNotFoundError, GroundTruthError, OutDirError, FileNotFoundError, ValueError, KeyError) as exc:
        logger.error("%s", exc)
        return 2
