"""Stacking a model's logit with the file's own JPEG quality factor (``export --stack-quality``).

A network that reads the quality plane can still rank JPEG files worse than that plane alone: its
image features add noise across compression levels. Stacking makes the prior explicit. For a file
with a JPEG header the model's logit becomes ``a * z + b * log(q) / log(100) + c``, where ``z`` is the
network's own logit (useful minus non-useful) and (a, b, c) fitted on the validation photos (never the
test split); without a header ``z`` is kept as it is. The mix a / b is the one that ranks the validation
rows best (AUROC, the figure the model is judged on; a grid that includes the logistic fit's own ratio),
and the scale and offset then come from a class-balanced logistic regression at that mix, so the output
stays a calibrated logit. The likelihood alone weighs the network's between-level noise too much.
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
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import torch
from onnx import TensorProto, helper

from app.contract import ModelContract, latest_version_dir
from app.engine import UtilityModel
from app.usage import UsageError
from training.export.convert import set_metadata
from training.metrics import auroc, best_threshold
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


def stack_inputs(model: UtilityModel, paths: list[str], batch: int = 64) -> np.ndarray:
    """(N, 2) from a model's own answers: its logit z, and log q / log 100 (-1: no header)."""
    out = []
    for i in range(0, len(paths), batch):
        x = read_batch(paths[i : i + batch], model.spec)
        p = np.clip(model.predict(x).astype(np.float64), EPS, 1 - EPS)
        out.append(np.stack([np.log(p / (1 - p)), x[:, -1].mean((1, 2))], 1))
    return np.concatenate(out) if out else np.zeros((0, 2))


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
    z, logq, y = inputs[rows, 0], inputs[rows, 1], y[rows].astype(int)
    a, b, c = fit_weights(z, logq, y)
    s = a * z + b * logq + c
    fit = {
        "a": a,
        "b": b,
        "c": c,
        "mix_a_over_b": a / b if b else None,
        "rows": int(rows.sum()),
        "val_auroc_network": auroc(y, z),
        "val_auroc_quality_alone": auroc(y, logq),
        "val_auroc_stacked": auroc(y, s),
        "val_best_threshold": best_threshold(y, 1 / (1 + np.exp(-s))),
    }
    log.info("quality stack on %d validation rows: %s", fit["rows"], fit)
    return fit


def _const(name: str, value: float | list[int]) -> onnx.NodeProto:
    kind = TensorProto.INT64 if isinstance(value, list) else TensorProto.FLOAT
    dims = [len(value)] if isinstance(value, list) else []
    tensor = helper.make_tensor(name, kind, dims, value if isinstance(value, list) else [value])
    return helper.make_node("Constant", [], [name], value=tensor)


def reduce_mean(opset: int, x: str, out: str) -> onnx.NodeProto:
    """Mean over (C, H, W) of a (N, 1, H, W) plane: axes an attribute up to opset 17, an input from 18."""
    if opset < 18:
        return helper.make_node("ReduceMean", [x], [out], axes=[1, 2, 3], keepdims=0)
    return helper.make_node("ReduceMean", [x, "stack/axes123"], [out], keepdims=0)


def append_stack(path: Path, a: float, b: float, c: float) -> None:
    """Rewrite the ONNX file so its (N, 2) logits output is the stacked one (the same name and shape)."""
    model = onnx.load(str(path))
    graph = model.graph
    x, out = graph.input[0].name, graph.output[0].name
    channels = graph.input[0].type.tensor_type.shape.dim[1].dim_value
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    raw = "stack/raw_logits"
    for node in graph.node:  # the network now writes raw_logits; the stack writes the output
        node.output[:] = [raw if o == out else o for o in node.output]
    n = lambda op, ins, outs, **kw: helper.make_node(op, ins, outs, **kw)  # noqa: E731
    graph.node.extend(
        [
            _const("stack/start", [channels - 1]),
            _const("stack/end", [channels]),
            _const("stack/axis1", [1]),
            _const("stack/axes123", [1, 2, 3]),
            _const("stack/i0", [0]),
            _const("stack/i1", [1]),
            _const("stack/unknown", -0.5),
            _const("stack/a", a),
            _const("stack/b", b),
            _const("stack/c", c),
            _const("stack/half", 0.5),
            _const("stack/minus_half", -0.5),
            # the quality plane's mean, as training.train.model.quality_inputs reads it
            n("Slice", [x, "stack/start", "stack/end", "stack/axis1"], ["stack/plane"]),
            reduce_mean(opset, "stack/plane", "stack/value"),
            n("Greater", ["stack/value", "stack/unknown"], ["stack/known_bool"]),
            n("Cast", ["stack/known_bool"], ["stack/known"], to=TensorProto.FLOAT),
            n("Relu", ["stack/value"], ["stack/value_pos"]),
            n("Mul", ["stack/value_pos", "stack/known"], ["stack/logq"]),
            n("Gather", [raw, "stack/i1"], ["stack/l1"], axis=1),
            n("Gather", [raw, "stack/i0"], ["stack/l0"], axis=1),
            n("Sub", ["stack/l1", "stack/l0"], ["stack/z2"]),
            n("Squeeze", ["stack/z2", "stack/axis1"], ["stack/z"]),
            n("Mul", ["stack/a", "stack/z"], ["stack/az"]),
            n("Mul", ["stack/b", "stack/logq"], ["stack/bq"]),
            n("Add", ["stack/az", "stack/bq"], ["stack/azbq"]),
            n("Add", ["stack/azbq", "stack/c"], ["stack/s"]),
            n("Sub", ["stack/s", "stack/z"], ["stack/delta"]),
            n("Mul", ["stack/known", "stack/delta"], ["stack/kdelta"]),
            n("Add", ["stack/z", "stack/kdelta"], ["stack/zs"]),
            n("Unsqueeze", ["stack/zs", "stack/axis1"], ["stack/col"]),
            n("Mul", ["stack/col", "stack/minus_half"], ["stack/neg"]),
            n("Mul", ["stack/col", "stack/half"], ["stack/pos"]),
            n("Concat", ["stack/neg", "stack/pos"], [out], axis=1),
        ]
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def stack_folder(source: Path, manifests: list[Path], models_dir: Path, name: str, version: str) -> Path:
    """Stack an existing model folder into ``models_dir/name`` as a new version, card and metadata updated."""
    from training.export.cli import publish
    from training.manifest import read_manifests
    from training.train.dataset import mark_validation

    model = load_model(source)
    training = model.contract.training
    args = training.get("training_args", {})
    dataset = training.get("dataset", {})
    label_column = args.get("label_column") or dataset.get("label_column", "label")
    df = mark_validation(read_manifests(manifests, label_column), args, dataset)
    fit = fit_stack(model, df[df["split"] == "val"])
    stage = models_dir / f".{name}.stacking"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "1").mkdir(parents=True)
    target = stage / "1" / "model.onnx"
    shutil.copyfile(model.path, target)
    append_stack(target, fit["a"], fit["b"], fit["c"])
    training = {**training, "quality_stack": fit, "stacked_from": model.version}
    training["architecture"] = f"{training.get('architecture', '')}; {STACKED}"
    contract = ModelContract(
        task=model.task, version=version, preprocess=model.spec, training=training, threshold=fit["val_best_threshold"]
    )
    set_metadata(target, contract.to_metadata())
    for extra in ("config.pbtxt", "README.md"):
        if (source / extra).is_file():
            shutil.copyfile(source / extra, stage / extra)
    card = stage / "README.md"
    card.write_text(card.read_text() + card_section(fit, model.version) if card.is_file() else card_section(fit, ""))
    try:
        return publish(stage, models_dir / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


STACKED = "logit stacked with the JPEG header's log quality (mix chosen on validation AUROC, then a logistic fit)"


def card_section(fit: dict[str, Any], parent: str) -> str:
    return (
        f"\n## Quality stack\n\nThis version is version `{parent}`'s network with its {STACKED}: "
        f"logit = {fit['a']:.4f} z + {fit['b']:.4f} log(q)/log(100) + {fit['c']:.4f} for files with a JPEG "
        f"header, z unchanged otherwise; default threshold {fit['val_best_threshold']:.3f}. On the "
        f"{fit['rows']} validation rows with a header, AUROC: network {fit['val_auroc_network']:.3f}, quality "
        f"alone {fit['val_auroc_quality_alone']:.3f}, stacked {fit['val_auroc_stacked']:.3f}.\n\n"
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
