"""``image-utility label``'s options: light to import (no torch, no pandas)."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.usage import Parser
from training.utility import RULES, UtilityRule

DESCRIPTION = "pristine photos -> distorted images + a labelled manifest (paper, sec. III-IV)"


def get_parser() -> argparse.ArgumentParser:
    p = Parser(prog="image-utility label", description=DESCRIPTION)
    p.add_argument("images_dir", type=Path, help="folder of pristine photos (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output folder (images/, parts/, manifest.csv)")
    p.add_argument("--task", choices=("classification", "detection"), default="classification")
    p.add_argument("--labelers", help="comma-separated names (see 'image-utility label list'); default per task")
    p.add_argument("--ground-truth", default=None, help="imagenet-wnid | coco:PATH; default: pristine decision")
    p.add_argument(
        "--distortions",
        default="jpeg",
        help="comma-separated: jpeg, jpeg-hq, jpeg-reencode, pristine, blur, noise, downscale",
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
