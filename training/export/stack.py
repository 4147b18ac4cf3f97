"""Stacking a model's logit with the file's own JPEG quality factor (``export --stack-quality``).

A network that reads the quality plane can still rank JPEG files worse than that plane alone: its
image features add noise across compression levels. Stacking makes the prior explicit. For a file
with a JPEG header the model's logit becomes ``a * z + b * log(q) / log(100) + c``, where ``z`` is the
network's own logit (useful minus non-useful) and (a, b, c) fitted on the validation photos (never the
test split); without a header (PNG, WebP, lossless blur...) it becomes ``d * z + e``, fitted on the same
photos' answers with the header taken away. The mix a / b is the one that ranks the validation
rows best (AUROC, the figure the model is judged on; a grid that includes the logistic fit's own ratio),
and the scale and offset then come from a class-balanced logistic regression at that mix, so the output
stays a calibrated logit. The likelihood alone weighs the network's between-level noise too much.
The header-less line (d, e) is a class-balanced logistic fit too, its offset then moved so that the
model's one default threshold is the balanced-accuracy optimum for header-less files as well: without
it those files were judged at the JPEG stack's threshold, which their raw logit is not scaled for.
Like temperature scaling it is fitted after training, on the exported model's own answers, and it
is appended to the ONNX graph, so the service runs it with no code of its own.

An existing model folder is stacked into a new version beside its own (Triton-style)::

    python -m training.export.stack models/utility-classification LABELS/imagenet-sample ... \
        --models-dir /tmp/models --version 20261202-stack
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from app.contract import ModelContract, latest_version_dir
from app.engine import UtilityModel
from app.usage import UsageError
from training.export.convert import set_metadata
from training.export.stack_graph import append_stack, strip_stack
from training.metrics import auroc, best_threshold, binary_metrics
from training.options import setup_logging
from training.predict import load_model, read_batch

log = logging.getLogger(__name__)
L2 = 1e-3  # keeps (a, b, c) finite when validation separates perfectly
EPS = 1e-6


RATIOS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0)


def _logistic(columns: list[np.ndarray], y: np.ndarray) -> list[float]:
    """Class-balanced logistic regression of y on the columns (plus an intercept, last), by L-BFGS."""
    xs = [torch.tensor(v, dtype=torch.float64) for v in columns]
    yt = torch.tensor(y, dtype=torch.float64)
    weight = torch.where(yt > 0.5, 0.5 / yt.mean(), 0.5 / (1 - yt.mean()))
    w = torch.tensor([1.0] + [0.0] * len(xs), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        s = sum(wi * x for wi, x in zip(w, xs, strict=False)) + w[-1]
        loss = (weight * torch.nn.functional.binary_cross_entropy_with_logits(s, yt, reduction="none")).mean()
        loss = loss + L2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return [float(v) for v in w.detach()]


def fit_weights(z: np.ndarray, logq: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(a, b, c): the mix a / b that ranks the rows best, then scale and offset by logistic regression."""
    a, b, _ = _logistic([z, logq], y)
    ratios = sorted({*RATIOS, *([a / b] if b > 0 and a >= 0 else [])})
    ratio = max(ratios, key=lambda r: (auroc(y, r * z + logq), r == (a / b if b else None)))
    scale, c = _logistic([ratio * z + logq], y)
    return ratio * scale, scale, c


def _logit(model: UtilityModel, x: np.ndarray) -> np.ndarray:
    p = np.clip(model.predict(x).astype(np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def stack_inputs(model: UtilityModel, paths: list[str], batch: int = 64) -> np.ndarray:
    """(N, 3) from a model's own answers: its logit z, log q / log 100 (-1: no header), and its logit
    on the same pixels with the header taken away (the quality plane at -1, as a PNG of them reads)."""
    out = []
    for i in range(0, len(paths), batch):
        x = read_batch(paths[i : i + batch], model.spec)
        bare = x.copy()
        bare[:, -1] = -1.0
        out.append(np.stack([_logit(model, x), x[:, -1].mean((1, 2)), _logit(model, bare)], 1))
    return np.concatenate(out) if out else np.zeros((0, 3))


PRISTINE_USEFUL = 0.97  # the share of pristine photos a header-less file must still call useful


def fit_headerless(
    z: np.ndarray, y: np.ndarray, threshold: float, pristine: np.ndarray | None = None
) -> tuple[float, float]:
    """(d, e) for files without a header: a balanced logistic fit of y on z, its offset moved so that
    ``threshold`` (the stacked model's default) is where these files' balanced accuracy peaks, but
    never so low that fewer than PRISTINE_USEFUL of the ``pristine`` photos' logits are called useful:
    pixels alone rank header-less files weakly, and a gate that turns away clean photos is worse than
    one that lets some damaged ones through."""
    d, e = _logistic([z], y)
    if d <= 0:  # the network does not rank header-less files: keep its answer as it is
        return 1.0, 0.0
    best = best_threshold(y, 1 / (1 + np.exp(-(d * z + e))))
    best = float(np.clip(best, EPS, 1 - EPS))
    cut = float(np.log(threshold / (1 - threshold)))
    e += cut - float(np.log(best / (1 - best)))
    if pristine is not None and len(pristine):
        e = max(e, cut - d * float(np.quantile(pristine, 1 - PRISTINE_USEFUL)) + EPS)
    return d, e


def fit_stack(model: UtilityModel, val: pd.DataFrame) -> dict[str, Any]:
    """(a, b, c) and what the fit measured, on the labelled validation rows that have a JPEG header."""
    if not model.spec.quality_map:
        raise ValueError(f"{model.folder}: --stack-quality needs a model reading the quality plane (--quality-map)")
    inputs = stack_inputs(model, val["path"].tolist())
    y = val["label"].to_numpy()
    rows = (y >= 0) & (inputs[:, 1] > -0.5)
    if rows.sum() < 10 or len(set(y[rows])) < 2:
        raise UsageError(
            f"--stack-quality: {int(rows.sum())} labelled validation rows with a JPEG header in the manifests, "
            "need 10+ of both labels; pass --manifest with the run's validation photos"
        )
    bare = (y >= 0) & ~(inputs[:, 1] > -0.5)  # rows that have no header of their own (lossless files)
    zb = np.concatenate([inputs[rows, 2], inputs[bare, 0]])
    yb = np.concatenate([y[rows], y[bare]]).astype(int)
    z, logq, y = inputs[rows, 0], inputs[rows, 1], y[rows].astype(int)
    a, b, c = fit_weights(z, logq, y)
    s = a * z + b * logq + c
    threshold = best_threshold(y, 1 / (1 + np.exp(-s)))
    pristine = val["distortion"].to_numpy() == "pristine" if "distortion" in val else np.zeros(len(val), bool)
    d, e = fit_headerless(zb, yb, threshold, inputs[rows & pristine, 2])
    fit = {
        "a": a,
        "b": b,
        "c": c,
        "d": d,
        "e": e,
        "mix_a_over_b": a / b if b else None,
        "rows": int(rows.sum()),
        "rows_headerless": len(yb),
        "val_auroc_network": auroc(y, z),
        "val_auroc_quality_alone": auroc(y, logq),
        "val_auroc_stacked": auroc(y, s),
        "val_auroc_headerless": auroc(yb, zb),
        "val_best_threshold": threshold,
        "val_balanced_accuracy_headerless": _bacc(yb, d * zb + e, threshold),
        "val_balanced_accuracy_headerless_raw": _bacc(yb, zb, threshold),
    }
    log.info("quality stack on %d validation rows: %s", fit["rows"], fit)
    return fit


def _bacc(y: np.ndarray, logit: np.ndarray, threshold: float) -> float:
    return binary_metrics(y, 1 / (1 + np.exp(-logit)), threshold)["balanced_accuracy"]


def stack_folder(source: Path, manifests: list[Path], models_dir: Path, name: str, version: str) -> Path:
    """Stack an existing model folder into ``models_dir/name`` as a new version, card and metadata updated."""
    from training.export.cli import publish
    from training.manifest import read_manifests
    from training.train.dataset import mark_validation

    source_model = load_model(source)
    training = source_model.contract.training
    args = training.get("training_args", {})
    dataset = training.get("dataset", {})
    label_column = args.get("label_column") or dataset.get("label_column", "label")
    df = mark_validation(read_manifests(manifests, label_column), args, dataset)
    stage = models_dir / f".{name}.stacking"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "1").mkdir(parents=True)
    target = stage / "1" / "model.onnx"
    shutil.copyfile(source_model.path, target)
    if strip_stack(target):  # a stacked model: the new stack replaces the old one, fitted on the network
        log.info("%s: its quality stack taken off; refitting it on the network's own logits", source)
    fit = fit_stack(load_model(stage), df[df["split"] == "val"])
    append_stack(target, fit["a"], fit["b"], fit["c"], fit["d"], fit["e"])
    network = training.get("stacked_from", source_model.version)
    architecture = training.get("architecture", "").split(f"; {STACKED}")[0]
    training = {**training, "quality_stack": fit, "stacked_from": network, "architecture": f"{architecture}; {STACKED}"}
    contract = ModelContract(
        task=source_model.task,
        version=version,
        preprocess=source_model.spec,
        training=training,
        threshold=fit["val_best_threshold"],
    )
    set_metadata(target, contract.to_metadata())
    for extra in ("config.pbtxt", "README.md"):
        if (source / extra).is_file():
            shutil.copyfile(source / extra, stage / extra)
    card = stage / "README.md"
    text = card.read_text().split("\n## Quality stack\n")[0] if card.is_file() else ""
    card.write_text(text + card_section(fit, network))
    try:
        folder = publish(stage, models_dir / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    name_version(models_dir / name / "README.md", version, folder.name, network)
    return folder


def name_version(card: Path, version: str, folder: str, network: str) -> None:
    """The card's version line names the new version and its file (it was copied from the source's)."""
    if not card.is_file():
        return
    line = re.compile(r"^- Version `[^`]*`, file `[^`]*`( \([^)]*\))?[^,]*,", re.M)
    said = f": version `{network}`'s network, quality stack refitted,"
    new = lambda m: f"- Version `{version}`, file `{folder}/model.onnx`{m.group(1) or ''}{said}"  # noqa: E731
    card.write_text(line.sub(new, card.read_text(), count=1))


STACKED = "logit stacked with the JPEG header's log quality (mix chosen on validation AUROC, then a logistic fit)"


def _headerless(fit: dict[str, Any]) -> str:
    if "val_auroc_headerless" not in fit:
        return ""
    return (
        f" The same photos without a header ({fit['rows_headerless']} rows: those with it taken away, and the "
        f"lossless ones): AUROC {fit['val_auroc_headerless']:.3f}, balanced accuracy at the default threshold "
        f"{100 * fit['val_balanced_accuracy_headerless']:.1f} % (the raw logit: "
        f"{100 * fit['val_balanced_accuracy_headerless_raw']:.1f} %)."
    )


def card_section(fit: dict[str, Any], parent: str) -> str:
    return (
        f"\n## Quality stack\n\nThis version is version `{parent}`'s network with its {STACKED}: "
        f"logit = {fit['a']:.4f} z + {fit['b']:.4f} log(q)/log(100) + {fit['c']:.4f} for files with a JPEG "
        f"header, {fit.get('d', 1.0):.4f} z + {fit.get('e', 0.0):.4f} without one; default threshold "
        f"{fit['val_best_threshold']:.3f}. On the {fit['rows']} validation rows with a header, AUROC: network "
        f"{fit['val_auroc_network']:.3f}, quality alone {fit['val_auroc_quality_alone']:.3f}, stacked "
        f"{fit['val_auroc_stacked']:.3f}.{_headerless(fit)}\n\n"
        f"```\n{json.dumps(fit, indent=1)}\n```\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.export.stack", description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="model folder (models/<name>) whose network reads the quality plane")
    p.add_argument("manifests", type=Path, nargs="+", help="the labelling OUT_DIRs it was trained on")
    p.add_argument("--models-dir", type=Path, required=True, help="where the stacked model folder goes")
    p.add_argument("--name", default=None, help="model folder name (default: the source's)")
    p.add_argument("--version", required=True)
    args = p.parse_args(argv)
    setup_logging()
    if not (args.model / "config.pbtxt").is_file() and not latest_version_dir(args.model).is_dir():
        p.error(f"MODEL {args.model}: not a model folder")
    target = stack_folder(args.model, args.manifests, args.models_dir, args.name or args.model.name, args.version)
    log.info("wrote %s", target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
