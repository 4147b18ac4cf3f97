"""Real test inputs: a tiny ONNX model following the model contract, and real image bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image

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
) -> Path:
    """A real ONNX model with the contract's metadata: red images are useful, blue ones are not.

    logits = [gain * (B - R), gain * (R - B)] over the mean colour of the normalised input.
    ``slow_matmuls`` adds that many input-dependent 512x512 matrix products per batch (about
    5 ms each here) whose result is multiplied by zero: a model that is slow for real.
    """
    w = np.array([[-gain, gain], [0.0, 0.0], [gain, -gain]], dtype=np.float32)
    b = np.zeros(2, dtype=np.float32)
    inits = [
        helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.ravel()),
        helper.make_tensor("B", TensorProto.FLOAT, b.shape, b),
    ]
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["fast_logits" if slow_matmuls else "logits"]),
    ]
    if slow_matmuls:
        nodes, inits = _add_slow_branch(nodes, inits, slow_matmuls)
    graph = helper.make_graph(
        nodes,
        "tiny_utility",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    contract = ModelContract(
        task=task,
        version=version,
        preprocess=PreprocessSpec(size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        training={"note": "test model made by tests/support.py; red means useful"},
    )
    helper.set_model_props(model, contract.to_metadata())
    onnx.checker.check_model(model)
    folder = models_dir / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "1" / "model.onnx")
    (folder / "config.pbtxt").write_text(config_pbtxt(name, size))
    (folder / "README.md").write_text(f"# {name}\n\nTiny test model.\n")
    return folder


def _add_slow_branch(nodes: list, inits: list, count: int) -> tuple[list, list]:
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
        helper.make_node("Add", ["fast_logits", "zero"], ["logits"]),
    ]
    return nodes, inits


def image_bytes(
    color: tuple[int, int, int] = (220, 30, 30), size: tuple[int, int] = (64, 48), fmt: str = "JPEG", **save
) -> bytes:
    """A solid-colour image with a little texture, encoded for real."""
    rng = np.random.default_rng(sum(color) + size[0])
    arr = np.clip(np.array(color, dtype=np.int16) + rng.integers(-10, 10, (size[1], size[0], 3)), 0, 255).astype(
        np.uint8
    )
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format=fmt, **save)
    return buf.getvalue()


RED = (220, 30, 30)
BLUE = (30, 30, 220)
