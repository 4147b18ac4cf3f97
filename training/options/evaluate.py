"""``image-utility evaluate``'s options, parsed and checked without importing torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.contract import find_model_dirs
from app.usage import Parser, UsageError, existing, fresh_folder, in_range
from training.options import manifest_given

DESCRIPTION = "re-measure the paper's experiments for one bundled model into a report"
MANIFEST = "a labelling OUT_DIR or a manifest file"


def get_parser() -> argparse.ArgumentParser:
    p = Parser(prog="image-utility evaluate", description=DESCRIPTION)
    p.add_argument("--manifest", type=Path, required=True, help="label manifest (file or labelling OUT_DIR)")
    p.add_argument("--models-dir", type=Path, default=Path("models"), help="folder of model folders")
    p.add_argument("--model", required=True, help="model folder name under --models-dir: the predictor under test")
    p.add_argument("--out", type=Path, default=None, help="report folder (default reports/<model>)")
    p.add_argument("--other-model", default=None, help="the other task's model (inter-task, Tables III/IV)")
    p.add_argument(
        "--predictor",
        action="append",
        default=[],
        metavar="COLUMN=FOLDER",
        help="extra predictor trained on the labels in COLUMN (e.g. efficientnet-lite0.u), for Table I/II; repeatable",
    )
    p.add_argument("--holdout", default=None, help="network left out of a predictor's labels (Fig. 2)")
    p.add_argument(
        "--holdout-predictor",
        type=Path,
        action="append",
        default=[],
        help="model folder trained without --holdout's labels, used as a filter too (Fig. 2); repeatable",
    )
    p.add_argument("--coco-annotations", type=Path, default=None, help="COCO instances JSON (detection mAP)")
    p.add_argument("--extra-manifest", type=Path, action="append", default=[], help="manifest of other distortions")
    p.add_argument("--images-dir", type=Path, default=None, help="pristine images (default: from the manifest JSON)")
    p.add_argument("--limit", type=int, default=0, help="at most this many test sources per manifest (0: all)")
    p.add_argument("--baseline-limit", type=int, default=300, help="JPEG test images scored by the Fig. 1 baselines")
    p.add_argument("--energy-net", default="efficientnet-lite0", help="classifier whose logits give the energy score")
    p.add_argument("--no-nr-iqa", dest="nr_iqa", action="store_false", help="skip BRISQUE and NIQE (slow)")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="p_useful at or above which an image is useful (default: the model's)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", action="append", default=[], help="a sentence added to the report (budgets, caveats)")
    p.add_argument("--force", action="store_true", help="write into --out even when it already holds a report")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parse_predictors(specs: list[str]) -> list[tuple[str, Path]]:
    out = []
    for spec in specs:
        column, sep, folder = spec.partition("=")
        if not sep or not column or not folder:
            raise UsageError(f"--predictor {spec!r}: expected COLUMN=FOLDER")
        out.append((column, Path(folder)))
    return out


def model_folder(option: str, models_dir: Path, name: str) -> None:
    """``name`` is a model folder under ``models_dir``; else list the ones there."""
    names = [p.name for p in find_model_dirs(models_dir)]
    if name not in names:
        there = ", ".join(names) if names else "none"
        raise UsageError(f"{option} {name!r}: no model folder {str(models_dir / name)!r}; models there: {there}")


def check(args: argparse.Namespace) -> None:
    """Refuse values that cannot work, naming the option (:class:`UsageError`); set the default --out."""
    manifest_given("--manifest", args.manifest, MANIFEST)
    for extra in args.extra_manifest:
        manifest_given("--extra-manifest", extra, MANIFEST)
    model_folder("--model", args.models_dir, args.model)
    if args.other_model:
        model_folder("--other-model", args.models_dir, args.other_model)
    for _, folder in parse_predictors(args.predictor):
        existing("--predictor", folder, "a model folder")
    for folder in args.holdout_predictor:
        existing("--holdout-predictor", folder, "a model folder")
    existing("--coco-annotations", args.coco_annotations, "a COCO instances JSON file")
    existing("--images-dir", args.images_dir, "the folder of pristine images")
    in_range("--threshold", args.threshold, 0, 1)
    in_range("--limit", args.limit, 0)
    in_range("--baseline-limit", args.baseline_limit, 0)
    args.out = args.out or Path("reports") / args.model
    fresh_folder("--out", args.out, args.force)


def parse(argv: list[str] | None) -> argparse.Namespace:
    args = get_parser().parse_args(argv)
    check(args)
    return args
