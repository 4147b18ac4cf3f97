"""``image-utility label``: pristine photos -> distorted images + a labelled manifest (paper, sec. III-IV).

    image-utility label IMAGES_DIR --task classification --ground-truth imagenet-wnid --out OUT
    image-utility label IMAGES_DIR --task detection --ground-truth coco:instances.json --out OUT
    image-utility label merge SHARD_DIR... --out OUT
    image-utility label list

Resumable: rerun the same command after an interruption and it continues where it stopped
(one part file per source, :mod:`training.label.parts`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from app.usage import UsageError
from training.files import remove_stale_temporaries
from training.label.distortions import get_distortion, levels_of
from training.label.groundtruth import GroundTruthError, ImagenetWnid, load_ground_truth
from training.label.outdir import OutDirError, claim, finalize, merge, read_sources
from training.label.parts import Job, label_source, part_path, reference_kind
from training.label.rows import assign_splits
from training.labelers import LABELERS, WeightsNotFoundError, build_labeler
from training.options import setup_logging
from training.options.label import get_parser, merge_parser, parse_levels, parse_shard
from training.utility import UtilityRule

logger = logging.getLogger("training.label")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
DEFAULT_LABELERS = {
    "classification": "efficientnet-lite0,efficientnet-lite1,efficientnet-lite2",
    "detection": "hog-people,haar-face,mtcnn-face",
}


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


def plan_sources(args: argparse.Namespace, settings: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, split) for every source of the run, in sorted order; the split is drawn over all
    sources before --only-split filters them, so it matches a run without the filter."""
    sources = list_sources(args.images_dir, args.limit)
    if not sources:
        raise ValueError(f"no images in {args.images_dir}")
    stems: dict[str, str] = {}
    for source in sources:
        stem = source.rsplit(".", 1)[0]
        if stem in stems:
            raise ValueError(f"{stems[stem]} and {source} would share their distorted images' names; rename one")
        stems[stem] = source
    splits = assign_splits(sources, settings["seed"], settings["test_fraction"])
    return [(s, splits[s]) for s in sources if settings["only_split"] in (None, splits[s])]


def check_device(device: str) -> None:
    if device == "cpu":
        return
    import torch  # only for a GPU run: the CPU labelers of a detection run need no torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available here (use --device cpu)")


def label(args: argparse.Namespace, settings: dict[str, Any], shard: tuple[int, int]) -> int:
    """Label this shard's sources not done yet, then write the manifest (of the whole run once every
    shard is done, else of this shard)."""
    check_device(args.device)
    truth = load_ground_truth(settings["ground_truth"])
    sources = plan_sources(args, settings)
    if isinstance(truth, ImagenetWnid):
        for source, _ in sources:
            truth.class_of(source)  # fail before any work when a name has no wnid
    out = args.out
    claim(out, settings, sources)
    if removed := remove_stale_temporaries(out):
        logger.info("removed %d temporary files left by an interrupted run", removed)
    mine = [s for k, (s, _) in enumerate(sources) if k % shard[1] == shard[0]]
    todo = [s for s in mine if not part_path(out, s).is_file()]
    logger.info("%d sources (%d in this shard), %d already done", len(sources), len(mine), len(mine) - len(todo))
    if todo:
        labelers = [build_labeler(n, args.device, args.allow_download, args.batch_size) for n in settings["labelers"]]
        for lab in labelers:
            logger.info("%s: reference = %s", lab.name, reference_kind(lab, truth))
        job = Job(
            args.images_dir,
            out,
            settings["task"],
            tuple(settings["distortions"]),
            tuple(settings["levels"]),
            settings["seed"],
            UtilityRule(**settings["rule"]),
            truth,
        )
        start = time.monotonic()
        with logging_redirect_tqdm():
            for source in tqdm(todo, desc="label", unit="src", initial=len(mine) - len(todo), total=len(mine)):
                label_source(source, labelers, job)
        logger.info("labelled %d sources in %.1f s", len(todo), time.monotonic() - start)
    if shard[1] == 1:
        finalize(out, settings, read_sources(out))
    elif all(part_path(out, s).is_file() for s, _ in sources):
        finalize(out, settings, read_sources(out))  # the last shard of a shared folder
    else:
        own = set(mine)
        finalize(out, settings, [(s, sp) for s, sp in sources if s in own], f"shard-{shard[0]}-of-{shard[1]}")
    return 0


def setup(threads: int | None) -> None:
    setup_logging()
    if threads:
        import cv2  # torch and OpenCV only when their thread count is set
        import torch

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] == "merge":
            args = merge_parser().parse_args(argv[1:])
            setup(None)
            merge(args.shards, args.out, args.partial)
            return 0
        if argv and argv[0] == "list":
            for entry in LABELERS.values():
                sys.stdout.write(f"{entry.name:<36} {entry.task:<15} weights: {entry.source}\n")
            return 0
        args = get_parser().parse_args(argv)
        setup(args.threads)
        return label(args, settings_from(args), parse_shard(args.shard))
    except UsageError:
        raise  # image-utility's one line
    except (WeightsNotFoundError, GroundTruthError, OutDirError, FileNotFoundError, ValueError, KeyError) as exc:
        logger.error("%s", exc)
        return 2
