"""``image-utility export``: checkpoint -> ONNX model folder the service loads.

Writes ``MODELS_DIR/<name>/1/model.onnx`` (dynamic batch, opset >= 17, the model contract in its
metadata; into an existing model folder, the next version beside the others), ``config.pbtxt``
(Triton, onnxruntime backend) and a ``README.md`` model card. The
export is checked with ``onnx.checker`` and against PyTorch on real images (fails above
``--tolerance``), then measured on the test split through the service's own engine. ``--int8`` adds
a static QDQ quantisation calibrated on training images; ``--ship auto`` keeps it when its test
accuracy is within ``--int8-max-drop`` points of fp32.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from app.contract import ModelContract, config_pbtxt
from app.preprocess import PreprocessSpec
from training.export.card import render_card
from training.export.convert import set_metadata, to_onnx, verify_onnx
from training.export.quantize import ImageReader, images_per_second, quantize
from training.export.stack import STACKED, fit_stack
from training.export.stack_graph import append_stack
from training.manifest import find_labelers, read_manifests
from training.options import setup_logging
from training.options.export import parse
from training.predict import evaluate_folder, load_model, read_batch
from training.provenance import portable_paths
from training.train.dataset import mark_validation
from training.train.model import model_from_checkpoint

log = logging.getLogger("training.export")
MAX_META_CHARS = 50_000  # side files larger than this stay out of the ONNX metadata


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The weights of ``best.pt`` (or the file given); history and wall time of the run's last checkpoint."""
    file = path / "best.pt" if path.is_dir() else path
    ckpt = torch.load(file, map_location="cpu", weights_only=False)
    if "model" not in ckpt and "model_full" in ckpt:  # a distill run's checkpoint.pt: its last step
        from training.distill.checkpoint import last_step

        ckpt = last_step(ckpt)
    last = file.parent / "checkpoint.pt"
    if last.is_file() and last != file:
        full = torch.load(last, map_location="cpu", weights_only=False)
        ckpt.update({k: full[k] for k in ("history", "wall_s") if k in full})
    log.info("checkpoint %s (epoch %d)", file, ckpt["epoch"])
    return ckpt


def pick(frame: Any, n: int, seed: int) -> list[str]:
    return frame.sample(n=min(n, len(frame)), random_state=seed)["path"].tolist() if len(frame) else []


def build_variants(args: argparse.Namespace, ckpt: dict[str, Any], df: Any, stage: Path) -> dict[str, Any]:
    """Export fp32 (and int8), verify, measure each on the test split; returns the measurements."""
    spec = PreprocessSpec.from_json(ckpt["spec"])
    model = model_from_checkpoint(ckpt)
    test, train = df[df["split"] == "test"], df[df["split"] == "train"]
    if not len(train):  # a distill run's manifests may hold only its held-out photos: their images, never trained on
        train = df[df["split"] == "val"]
    fp32 = to_onnx(model, spec.size, stage / "fp32" / "1" / "model.onnx", args.opset, spec.channels)
    threshold = default_threshold(ckpt)
    contract = ModelContract(task=ckpt["args"]["task"], version="staging", preprocess=spec, threshold=threshold)
    set_metadata(fp32, contract.to_metadata())
    diff = verify_onnx(
        fp32, model, read_batch(pick(test if len(test) else train, args.parity_images, 0), spec), args.tolerance
    )
    paths = {"fp32": fp32}
    if args.int8:
        reader = ImageReader(pick(train, args.calib_images, 1), spec)
        paths["int8"] = quantize(fp32, stage / "int8" / "1" / "model.onnx", reader, args.calibration)
        set_metadata(paths["int8"], contract.to_metadata())
    stacked = stack(args, ckpt, df, paths)
    threshold = default_threshold(ckpt)
    result: dict[str, Any] = {
        **({"quality_stack": stacked} if stacked else {}),
        "parity_max_abs_diff": diff,
        "parity_images": min(args.parity_images, len(test) or len(train)),
    }
    speed_batch = read_batch(pick(test if len(test) else train, 32, 2), spec)
    speed = images_per_second(paths, speed_batch, threads=args.threads)
    for kind, path in paths.items():
        metrics = evaluate_folder(path.parent.parent, test, threshold, threads=args.threads) if len(test) else {}
        result[kind] = {
            "test": metrics,
            "images_per_s": speed[kind],
            "batch": len(speed_batch),
            "bytes": path.stat().st_size,
        }
        log.info(
            "%s: %.1f MB, %.1f images/s, test accuracy %s",
            kind,
            path.stat().st_size / 1e6,
            speed[kind],
            metrics.get("accuracy"),
        )
    return result


def stack(args: argparse.Namespace, ckpt: dict[str, Any], df: Any, paths: dict[str, Path]) -> dict[str, Any] | None:
    """``--stack-quality``: fit on the fp32 model's validation answers, append the stack to every variant."""
    if not getattr(args, "stack_quality", False):
        return None
    fit = fit_stack(load_model(paths["fp32"].parent.parent), df[df["split"] == "val"])
    for path in paths.values():
        append_stack(path, fit["a"], fit["b"], fit["c"], fit["d"], fit["e"])
    if getattr(args, "threshold", None) is None:  # the validation choice, made again for the stacked output
        best = dict(ckpt.get("best") or {})
        best["threshold_unstacked"], best["threshold"] = best.get("threshold"), fit["val_best_threshold"]
        ckpt["best"] = best
    return fit


def choose(args: argparse.Namespace, result: dict[str, Any]) -> str:
    if args.ship != "auto" or "int8" not in result:
        return args.ship if args.ship != "auto" else "fp32"
    measured = [result[k]["test"].get("accuracy") for k in ("fp32", "int8")]
    if any(m is None for m in measured):  # no test rows: int8's cost unmeasured, so not shipped on trust
        log.warning("no test rows to measure int8 against fp32 on: shipping fp32 (--ship int8 to force it)")
        return "fp32"
    drop = 100 * (measured[0] - measured[1])
    ok = drop <= args.int8_max_drop
    log.info(
        "int8 loses %.2f accuracy points (limit %.2f): shipping %s", drop, args.int8_max_drop, "int8" if ok else "fp32"
    )
    return "int8" if ok else "fp32"


def default_threshold(ckpt: dict[str, Any]) -> float:
    """The threshold chosen on validation (best balanced accuracy), the model's default; 0.5 for older runs."""
    return float((ckpt.get("best") or {}).get("threshold", 0.5))


def architecture(ckpt: dict[str, Any], result: dict[str, Any] | None = None) -> str:
    text = network(ckpt)
    if result and result.get("quality_stack"):
        text += f"; {STACKED}"
    return text


def network(ckpt: dict[str, Any]) -> str:
    backbone = ckpt["args"].get("backbone", "resnet18")
    if backbone != "resnet18":
        quality = ", and the JPEG header's quality factor" if ckpt["args"].get("quality_map") else ""
        return (
            f"{backbone} (ImageNet, frozen) features and logit statistics{quality}, read by a trained head; "
            f"2 outputs, labels {ckpt.get('data', {}).get('label_column', 'label')}"
        )
    views = (
        "two views (resized whole image, native-resolution crop) through one trunk"
        if ckpt["args"].get("native_crop")
        else "one view"
    )
    aux = ckpt.get("aux_targets") or []
    if ckpt["args"].get("quality_map"):
        views += ", and the JPEG header's quality factor as an input plane (embedded beside the image features)"
    return f"torchvision resnet18, {views}, 2 outputs" + (
        f" (trained with soft targets: {', '.join(aux)})" if aux else ""
    )


def training_metadata(ckpt: dict[str, Any], result: dict[str, Any], shipped: str) -> dict[str, Any]:
    """What the model says of its training (``/models``): no absolute path of the build machine."""
    side = ckpt.get("side_files", {})
    meta = {
        "architecture": architecture(ckpt, result),
        **({"quality_stack": result["quality_stack"]} if result.get("quality_stack") else {}),
        "precision": shipped,
        "labelers": find_labelers(side, ckpt["data"].get("other_columns", [])),
        "distortions": ckpt["data"]["distortions"],
        "label_rule": {k: v for k, v in side.items() if len(json.dumps(v, default=str)) <= MAX_META_CHARS},
        "dataset": {k: v for k, v in ckpt["data"].items() if k in ("label_column", "splits", "sources", "val_sources")},
        "test_metrics": result[shipped]["test"],
        "best_epoch": ckpt["best"],
        "training_args": ckpt["args"],
        "train_wall_s": ckpt["wall_s"],
        "git_commit": ckpt["commit"],
        "train_command": ckpt.get("command"),
    }
    return json.loads(portable_paths(json.dumps(meta, default=str)))


def run(args: argparse.Namespace, command: str) -> Path:
    ckpt = load_checkpoint(args.checkpoint)
    if getattr(args, "threshold", None) is not None:  # the operator's choice; the validation one is kept beside
        best = dict(ckpt.get("best") or {})
        best["threshold_on_validation"] = best.get("threshold")
        best["threshold"] = args.threshold
        ckpt["best"] = best
    task = ckpt["args"]["task"]
    name = args.name or f"utility-{task}"
    version = args.version or f"{time.strftime('%Y%m%d')}-{ckpt['commit'][:7]}"
    saved = ckpt["args"]["manifest"]
    manifests = args.manifest or [Path(m) for m in ([saved] if isinstance(saved, str) else saved)]
    df = read_manifests(manifests, ckpt["args"]["label_column"])
    df = mark_validation(df, ckpt["args"], ckpt.get("data", {}))
    args.models_dir.mkdir(parents=True, exist_ok=True)
    stage = args.models_dir / f".{name}.staging"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        result = build_variants(args, ckpt, df, stage)
        shipped = choose(args, result)
        folder = stage / "final"
        (folder / "1").mkdir(parents=True)
        model_file = folder / "1" / "model.onnx"
        shutil.copyfile(stage / shipped / "1" / "model.onnx", model_file)
        training = training_metadata(ckpt, result, shipped)
        spec = PreprocessSpec.from_json(ckpt["spec"])
        set_metadata(
            model_file,
            ModelContract(
                task=task, version=version, preprocess=spec, training=training, threshold=default_threshold(ckpt)
            ).to_metadata(),
        )
        (folder / "config.pbtxt").write_text(config_pbtxt(name, spec.size, args.max_batch_size, channels=spec.channels))
        info = {
            "name": name,
            "version": version,
            "task": task,
            "spec": spec,
            "shipped": shipped,
            "export": result,
            "export_command": command,
            "ckpt": ckpt,
            "training": training,
            "notes": args.note,
            "threshold": default_threshold(ckpt),
        }
        (folder / "README.md").write_text(render_card(info))
        target = publish(folder, args.models_dir / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log.info("wrote %s (%s, %s)", target, shipped, version)
    return target


def publish(staged: Path, model_dir: Path) -> Path:
    """Move a staged model folder (``1/model.onnx``, config, card) into ``model_dir``; the version folder written.

    Triton-style, nothing is overwritten: into an existing model folder the model goes as a new
    numeric version beside the others (highest + 1, which the service and Triton then serve); the
    folder's card and ``config.pbtxt`` become the new version's, the previous card moves into its
    own version folder.
    """
    if not model_dir.exists():
        staged.replace(model_dir)
        return model_dir / "1"
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    new = model_dir / str(max(versions, default=0) + 1)
    card = model_dir / "README.md"
    kept = model_dir / str(max(versions, default=0)) / "README.md"
    if versions and card.is_file() and not kept.exists():
        card.replace(kept)
    (staged / "1").replace(new)
    for name in ("README.md", "config.pbtxt"):
        (staged / name).replace(model_dir / name)
    return new


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    setup_logging(args.verbose)
    run(args, "image-utility export " + shlex.join(argv if argv is not None else sys.argv[1:]))
    return 0
