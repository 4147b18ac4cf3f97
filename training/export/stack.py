"""``export --stack-quality``: the network's logit stacked with the file's own JPEG quality factor.

A network that reads the quality plane can still rank JPEG files worse than that plane alone (its
image features add noise across compression levels). Stacking makes the prior explicit: for a file
with a JPEG header, the exported model's logit is ``a * z + b * log(q) / log(100) + c``, where ``z``
is the network's own logit (useful minus non-useful) and (a, b, c) a class-balanced logistic
regression fitted on the validation photos (never the test split); without a header the network's
logit is kept as it is. Like temperature scaling it is fitted after training and baked into the ONNX.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from app.preprocess import PreprocessSpec
from training.metrics import auroc, best_threshold
from training.predict import read_batch
from training.train.model import quality_inputs

log = logging.getLogger(__name__)
L2 = 1e-3  # keeps (a, b, c) finite when validation separates perfectly


class QualityStack(nn.Module):
    """``model``'s logits, restacked with the quality plane (the input's last channel) where it is known."""

    def __init__(self, model: nn.Module, a: float, b: float, c: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("weights", torch.tensor([a, b, c], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        z = logits[:, 1] - logits[:, 0]
        known, logq = quality_inputs(x[:, -1:]).unbind(1)
        a, b, c = self.weights.unbind()
        z = known * (a * z + b * logq + c) + (1 - known) * z
        return torch.stack([-z / 2, z / 2], 1)  # softmax -> sigmoid(z): p_useful


def stack_inputs(model: nn.Module, paths: list[str], spec: PreprocessSpec, batch: int = 64) -> np.ndarray:
    """(N, 3): the network's logit z, whether the quality is known, log q / log 100 (0 where unknown)."""
    out = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(paths), batch):
            x = torch.from_numpy(read_batch(paths[i : i + batch], spec))
            logits = model(x)
            out.append(torch.cat([(logits[:, 1] - logits[:, 0])[:, None], quality_inputs(x[:, -1:])], 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 3), np.float32)


def fit_weights(z: np.ndarray, logq: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Class-balanced logistic regression of y on (z, log q), by L-BFGS."""
    zt, qt, yt = (torch.tensor(v, dtype=torch.float64) for v in (z, logq, y))
    weight = torch.where(yt > 0.5, 0.5 / yt.mean(), 0.5 / (1 - yt.mean()))
    w = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        s = w[0] * zt + w[1] * qt + w[2]
        loss = (weight * nn.functional.binary_cross_entropy_with_logits(s, yt, reduction="none")).mean()
        loss = loss + L2 * (w[:2] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    a, b, c = (float(v) for v in w.detach())
    return a, b, c


def fit_stack(model: nn.Module, spec: PreprocessSpec, val: pd.DataFrame) -> tuple[QualityStack, dict[str, Any]]:
    """The stacked model and what the fit measured on the validation rows with a JPEG header."""
    if not spec.quality_map:
        raise ValueError("--stack-quality needs a model that reads the quality plane (train --quality-map)")
    inputs = stack_inputs(model, val["path"].tolist(), spec)
    y = val["label"].to_numpy()
    rows = (y >= 0) & (inputs[:, 1] > 0.5)
    if rows.sum() < 10 or len(set(y[rows])) < 2:
        raise ValueError(f"--stack-quality: {int(rows.sum())} labelled validation rows with a JPEG header, need 10+")
    z, logq, y = inputs[rows, 0], inputs[rows, 2], y[rows].astype(int)
    a, b, c = fit_weights(z, logq, y)
    fit = {
        "a": a,
        "b": b,
        "c": c,
        "rows": int(rows.sum()),
        "val_auroc_network": auroc(y, z),
        "val_auroc_quality_alone": auroc(y, logq),
        "val_auroc_stacked": auroc(y, a * z + b * logq),
        "val_best_threshold": best_threshold(y, 1 / (1 + np.exp(-(a * z + b * logq + c)))),
    }
    log.info("quality stack on %d validation rows: %s", fit["rows"], fit)
    return QualityStack(model, a, b, c).eval(), fit
