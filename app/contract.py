"""The model contract: what a model folder holds and what its ONNX metadata must say.

A model is a Triton-style folder ``<models_dir>/<name>/<version>/model.onnx`` with
``config.pbtxt`` and a ``README.md`` card beside the version folders. The ONNX input is float32
NCHW with a dynamic batch axis; the output is logits (or probabilities) over ``labels``.
Export (training) writes :meth:`ModelContract.to_metadata`; the service reads it back with
:meth:`ModelContract.from_metadata`, so the two can never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.preprocess import PreprocessSpec
from app.verdict import DEFAULT_THRESHOLD, NON_USEFUL, USEFUL

CONTRACT_VERSION = "1"
TASKS = ("classification", "detection")
OUTPUT_KINDS = ("logits", "probabilities")
_PREFIX = "utility."
_DEFAULT_LABELS = json.dumps([NON_USEFUL, USEFUL])
_THRESHOLD_RULE = f"{_PREFIX}threshold must be a number between 0 and 1 (exclusive)"


class ContractError(ValueError):
    """A model folder or its metadata does not follow the contract."""


@dataclass(frozen=True)
class ModelContract:
    task: str
    version: str
    preprocess: PreprocessSpec
    labels: tuple[str, ...] = (NON_USEFUL, USEFUL)
    output: str = "logits"
    training: dict[str, Any] = field(default_factory=dict)
    threshold: float = DEFAULT_THRESHOLD  # the decision threshold of a request that names none

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ContractError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.output not in OUTPUT_KINDS:
            raise ContractError(f"output must be one of {OUTPUT_KINDS}, got {self.output!r}")
        if sorted(self.labels) != sorted((NON_USEFUL, USEFUL)):
            raise ContractError(f"labels must be {USEFUL!r} and {NON_USEFUL!r}, got {self.labels}")
        if not (isinstance(self.threshold, int | float) and 0.0 < self.threshold < 1.0):
            raise ContractError(f"{_THRESHOLD_RULE}, got {self.threshold!r}")

    @property
    def useful_index(self) -> int:
        return self.labels.index(USEFUL)

    def to_metadata(self) -> dict[str, str]:
        return {
            f"{_PREFIX}contract": CONTRACT_VERSION,
            f"{_PREFIX}task": self.task,
            f"{_PREFIX}version": self.version,
            f"{_PREFIX}labels": json.dumps(list(self.labels)),
            f"{_PREFIX}output": self.output,
            f"{_PREFIX}preprocess": self.preprocess.to_json(),
            f"{_PREFIX}training": json.dumps(self.training, sort_keys=True, default=str),
            f"{_PREFIX}threshold": repr(float(self.threshold)),
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ModelContract:
        missing = [k for k in ("task", "version", "preprocess") if f"{_PREFIX}{k}" not in meta]
        if missing:
            raise ContractError(f"ONNX metadata lacks {', '.join(_PREFIX + k for k in missing)}")
        try:
            return cls(
                task=meta[f"{_PREFIX}task"],
                version=meta[f"{_PREFIX}version"],
                preprocess=PreprocessSpec.from_json(meta[f"{_PREFIX}preprocess"]),
                labels=tuple(json.loads(meta.get(f"{_PREFIX}labels", _DEFAULT_LABELS))),
                output=meta.get(f"{_PREFIX}output", "logits"),
                training=json.loads(meta.get(f"{_PREFIX}training", "{}")),
                threshold=_threshold(meta.get(f"{_PREFIX}threshold")),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise ContractError(f"bad ONNX metadata: {exc}") from exc


def _threshold(raw: str | None) -> float:
    if raw is None:
        return DEFAULT_THRESHOLD
    try:
        return float(raw)
    except ValueError:
        raise ContractError(f"{_THRESHOLD_RULE}, got {raw!r}") from None


def latest_version_dir(model_dir: Path) -> Path:
    """The highest numeric version folder that holds a model.onnx (Triton's 'latest' policy)."""
    versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and (p / "model.onnx").is_file()]
    if not versions:
        raise ContractError(f"{model_dir} has no <version>/model.onnx")
    return max(versions, key=lambda p: int(p.name))


def find_model_dirs(models_dir: Path) -> list[Path]:
    """Folders under models_dir that look like model folders (hold a numeric version folder)."""
    if not models_dir.is_dir():
        return []
    return sorted(
        p
        for p in models_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and any(c.is_dir() and c.name.isdigit() for c in p.iterdir())
    )


def config_pbtxt(
    name: str, input_size: int, max_batch_size: int = 64, preferred: tuple[int, ...] = (8, 16, 32), channels: int = 3
) -> str:
    """Triton config for the onnxruntime backend with dynamic batching."""
    prefs = ", ".join(str(b) for b in preferred if b <= max_batch_size)
    return (
        f'name: "{name}"\n'
        'backend: "onnxruntime"\n'
        f"max_batch_size: {max_batch_size}\n"
        f'input [ {{ name: "input" data_type: TYPE_FP32 dims: [ {channels}, {input_size}, {input_size} ] }} ]\n'
        'output [ { name: "logits" data_type: TYPE_FP32 dims: [ 2 ] } ]\n'
        f"dynamic_batching {{ preferred_batch_size: [ {prefs} ] max_queue_delay_microseconds: 2000 }}\n"
        "instance_group [ { kind: KIND_AUTO count: 1 } ]\n"
    )
