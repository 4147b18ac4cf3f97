"""``image-utility evaluate``: re-measure the paper's experiments for one bundled model into a report.

Reads a label manifest (its test split) and utility model folders, runs the experiments of
:mod:`training.evaluate.experiments` / :mod:`training.evaluate.detection`, and writes ``results.json``,
PNG figures and ``report.md`` (claims table first, :mod:`training.evaluate.report`) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from app.engine import UtilityModel
from training.evaluate import experiments as ex
from training.evaluate.detection import build_detector, intra_task_detection
from training.evaluate.report import write_report
from training.labelers import build_labeler
from training.manifest import Manifest, read_split
from training.options import setup_logging
from training.options.evaluate import parse, parse_predictors
from training.predict import load_model, predict_paths

log = logging.getLogger("training.evaluate")


_CACHE: dict[tuple[str, str], tuple[np.ndarray, dict]] = {}


def model_summary(model: UtilityModel) -> dict:
    """What the report says about a model: task, version, input size, training summary."""
    d = model.describe()
    return {k: d[k] for k in ("name", "task", "version", "input_size", "training", "file")}


def _predict(folder: Path, m: Manifest, device: str) -> tuple[np.ndarray, dict]:
    """p_useful of every row of ``m`` (computed once per model folder and manifest)."""
    key = (str(folder.resolve()), str(m.path.resolve()))
    if key not in _CACHE:
        model = load_model(folder, device)
        _CACHE[key] = predict_paths(model, list(m.rows["path"]), desc=folder.name), model_summary(model)
    return _CACHE[key]


def run(args: argparse.Namespace) -> dict:
    t0 = time.monotonic()
    m = read_split(args.manifest, "test", args.images_dir, args.limit, args.seed)
    rows = m.rows
    main_dir = args.models_dir / args.model
    p_main, main_info = _predict(main_dir, m, args.device)
    task = main_info["task"]
    if args.threshold is None:
        args.threshold = load_model(main_dir, args.device).contract.threshold
    res: dict = {
        "model": main_info,
        "task": task,
        "manifest": str(m.path),
        "labelers": m.labelers,
        "n_test_rows": len(rows),
        "n_test_sources": int(rows["source"].nunique()),
        "limit_sources": args.limit,
        "threshold": args.threshold,
        "notes": list(args.note),
        "distortions": sorted(map(str, rows["distortion"].unique())),
    }
    filters = {f"{task} (this model)": p_main}
    if args.other_model:
        p_other, other_info = _predict(args.models_dir / args.other_model, m, args.device)
        res["other_model"] = other_info
        filters[f"{other_info['task']} ({args.other_model})"] = p_other
    # Table I / II
    table = [
        {
            "labels": "combined (label)",
            "column": "label",
            "model": args.model,
            "training": main_info["training"],
            **ex.predictor_accuracy(rows, "label", p_main, args.threshold),
        }
    ]
    for column, folder in parse_predictors(args.predictor):
        p, info = _predict(folder, m, args.device)
        table.append(
            {
                "labels": column.removesuffix(".u"),
                "column": column,
                "model": str(folder),
                "training": info["training"],
                **ex.predictor_accuracy(rows, column, p, load_model(folder, args.device).contract.threshold),
            }
        )
    res["predictors"] = table
    # Continuous utility, beyond JPEG
    res["continuous_utility"] = ex.continuous_utility(rows, p_main)
    res["by_distortion"] = ex.by_distortion(rows, "label", p_main, args.threshold)
    for extra in args.extra_manifest:
        em = read_split(extra, "test", args.images_dir, args.limit, args.seed)
        p_extra, _ = _predict(main_dir, em, args.device)
        res["by_distortion"].update(
            {f"{k} ({extra.name})": v for k, v in ex.by_distortion(em.rows, "label", p_extra, args.threshold).items()}
        )
        res.setdefault("continuous_utility_extra", {})[str(extra)] = ex.continuous_utility(em.rows, p_extra)
    # Fig. 1
    energy_net = energy_logits(args.energy_net, args.device) if args.energy_net else None
    res["fig1"] = ex.fig1_baselines(rows, p_main, "label", args.baseline_limit, args.seed, energy_net, args.nr_iqa)
    res["fig1"]["energy_net"] = args.energy_net
    # Fig. 2 and Tables III / IV
    for folder in args.holdout_predictor:
        p_hold, _ = _predict(folder, m, args.device)
        filters[f"{task} without {args.holdout} ({folder.name})"] = p_hold
    res["intra_task"] = _intra_task(args, rows, task, filters)
    res["seconds"] = round(time.monotonic() - t0, 1)
    return res


def _intra_task(args: argparse.Namespace, rows, task: str, filters: dict[str, np.ndarray]) -> dict:
    if not args.holdout:
        return {"available": False, "reason": "no --holdout network given"}
    if task == "classification":
        return ex.intra_task_classification(rows, args.holdout, filters, args.threshold)
    if args.coco_annotations is None:
        return {"available": False, "reason": "detection mAP needs --coco-annotations"}
    try:
        detector, classes = build_detector(args.holdout, args.device)
    except (ImportError, KeyError, FileNotFoundError) as exc:
        return {"available": False, "reason": f"detector {args.holdout} unavailable: {exc}"}
    return intra_task_detection(rows, args.coco_annotations, detector, args.holdout, classes, filters, args.threshold)


def energy_logits(name: str, device: str) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """Images -> (N, classes) logits of a classification labeler, for the energy score of Fig. 1."""
    labeler = build_labeler(name, device=device)
    if not hasattr(labeler, "logits"):
        raise ValueError(f"--energy-net {name}: a {labeler.task} labeler has no class logits")
    return labeler.logits


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    setup_logging(args.verbose)
    out = args.out
    res = run(args)
    res["command"] = "image-utility evaluate " + shlex.join(sys.argv[2:] if argv is None else argv)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1, sort_keys=True, default=str) + "\n")
    report = write_report(res, out)
    log.info("wrote %s (%.0f s)", report, res["seconds"])
    return 0
