"""The labelling loop of ``image-utility label``: resumable, one part file per source."""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from training.common import remove_stale_temporaries
from training.groundtruth import ImagenetWnid, load_ground_truth
from training.labelers import build_labeler
from training.manifest import assign_splits
from training.outdir import claim, finalize, read_sources
from training.pipeline import Job, label_source, part_path, reference_kind
from training.utility import UtilityRule

logger = logging.getLogger("training.label")


def plan_sources(args: argparse.Namespace, settings: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, split) for every source of the run, in sorted order; the split is drawn over all
    sources before --only-split filters them, so it matches a run without the filter."""
    from training.label import list_sources

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
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available here (use --device cpu)")


def run(args: argparse.Namespace, settings: dict[str, Any], shard: tuple[int, int]) -> int:
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
