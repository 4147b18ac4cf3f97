"""Tiny real ONNX models that follow the model contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from app.contract import ModelContract, config_pbtxt
from app.preprocess import PreprocessSpec

TINY_SIZE = 32


def make_tiny_model(
    models_dir: Path,
    name: str = "tiny",
    *,
    size: int = TINY_SIZE,
    task: str = "classification",
    version: str = "test-1",
    gain: float = 8.0,
    slow_matmuls: int = 0,
    fail_on_green: bool = False,
    threshold: float | None = None,
    native_crop: bool = False,
    quality_map: bool = False,
    metadata: dict[str, str] | None = None,
) -> Path:
    """A real ONNX model with the contract's metadata: red images are useful, blue ones are not.

    logits = [gain * (B - R), gain * (R - B)] over the mean colour of the normalised input.
    ``slow_matmuls`` adds that many input-dependent 512x512 matrix products per batch (about
    5 ms each here) whose result is multiplied by zero: a model that is slow for real.
    ``fail_on_green`` makes onnxruntime itself fail on any batch holding a very green image (mean
    G > 242): a Reshape whose target shape is computed from the input becomes invalid.
    ``threshold`` is the contract's default threshold (None: the contract's default); ``metadata``
    overrides ONNX metadata entries as written, unchecked (for malformed models).
    ``quality_map`` adds the quality plane as a last input channel, which the model ignores.
    """
    w = np.array([[-gain, gain], [0.0, 0.0], [gain, -gain]], dtype=np.float32)
    if native_crop:  # a second view as channels 3-5 (PreprocessSpec.native_crop), read the same way
        w = np.concatenate([w, w]) / 2
    if quality_map:
        w = np.concatenate([w, np.zeros((1, 2), dtype=np.float32)])
    spec = PreprocessSpec(
        size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), native_crop=native_crop, quality_map=quality_map
    )
    b = np.zeros(2, dtype=np.float32)
    inits = [
        helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.ravel()),
        helper.make_tensor("B", TensorProto.FLOAT, b.shape, b),
    ]
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["fast_logits" if slow_matmuls or fail_on_green else "logits"]),
    ]
    if slow_matmuls:
        nodes, inits = _add_slow_branch(nodes, inits, slow_matmuls, "logits_slow" if fail_on_green else "logits")
    if fail_on_green:
        nodes, inits = _add_green_failure(nodes, inits, "logits_slow" if slow_matmuls else "fast_logits")
    graph = helper.make_graph(
        nodes,
        "tiny_utility",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", spec.channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    contract = ModelContract(
        task=task,
        version=version,
        preprocess=spec,
        training={"note": "test model made by tests/support/models.py; red means useful"},
        **({} if threshold is None else {"threshold": threshold}),
    )
    helper.set_model_props(model, contract.to_metadata() | (metadata or {}))
    onnx.checker.check_model(model)
    folder = models_dir / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "1" / "model.onnx")
    (folder / "config.pbtxt").write_text(config_pbtxt(name, size, channels=spec.channels))
    (folder / "README.md").write_text(f"# {name}\n\nTiny test model.\n")
    return folder


def _add_green_failure(nodes: list, inits: list, source: str) -> tuple[list, list]:
    """logits = source + 0 * sum(Reshape(two_values, [2 + (max mean green > 0.9)])): fails when green."""
    inits = [
        *inits,
        helper.make_tensor("g_start", TensorProto.INT64, [1], [1]),
        helper.make_tensor("g_end", TensorProto.INT64, [1], [2]),
        helper.make_tensor("g_axis", TensorProto.INT64, [1], [1]),
        helper.make_tensor("g_limit", TensorProto.FLOAT, [], [0.9]),
        helper.make_tensor("two", TensorProto.INT64, [1], [2]),
        helper.make_tensor("pair", TensorProto.FLOAT, [2], [1.0, 1.0]),
        helper.make_tensor("g_zero", TensorProto.FLOAT, [], [0.0]),
    ]
    nodes = [
        *nodes,
        helper.make_node("Slice", ["pooled", "g_start", "g_end", "g_axis"], ["green"]),
        helper.make_node("ReduceMax", ["green"], ["green_max"], keepdims=0),
        helper.make_node("Greater", ["green_max", "g_limit"], ["is_green"]),
        helper.make_node("Cast", ["is_green"], ["bump"], to=TensorProto.INT64),
        helper.make_node("Add", ["two", "bump"], ["target_shape"]),
        helper.make_node("Reshape", ["pair", "target_shape"], ["reshaped"]),
        helper.make_node("ReduceSum", ["reshaped"], ["r_sum"], keepdims=0),
        helper.make_node("Mul", ["r_sum", "g_zero"], ["r_zero"]),
        helper.make_node("Add", [source, "r_zero"], ["logits"]),
    ]
    return nodes, inits


def _add_slow_branch(nodes: list, inits: list, count: int, output: str = "logits") -> tuple[list, list]:
    a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32) / 32
    inits = [
        *inits,
        helper.make_tensor("A", TensorProto.FLOAT, a.shape, a.ravel()),
        helper.make_tensor("Z", TensorProto.FLOAT, [], [0.0]),
    ]
    nodes = [
        *nodes,
        helper.make_node("ReduceMean", ["input"], ["m"], keepdims=0),
        helper.make_node("Mul", ["A", "m"], ["h0"]),
    ]
    for i in range(count):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "A"], [f"h{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"h{count}"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "Z"], ["zero"]),
        helper.make_node("Add", ["fast_logits", "zero"], [output]),
    ]
    return nodes, inits
