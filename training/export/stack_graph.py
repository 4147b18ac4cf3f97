"""The quality stack appended to an ONNX graph: the same input and output, the logit re-mixed
(:mod:`training.export.stack` fits the weights)."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

RAW = "stack/raw_logits"  # the network's own logits, once a stack writes the output


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


def append_stack(path: Path, a: float, b: float, c: float, d: float = 1.0, e: float = 0.0) -> None:
    """Rewrite the ONNX file so its (N, 2) logits output is the stacked one (the same name and shape):
    ``a z + b log q + c`` with a header, ``d z + e`` without."""
    model = onnx.load(str(path))
    graph = model.graph
    x, out = graph.input[0].name, graph.output[0].name
    channels = graph.input[0].type.tensor_type.shape.dim[1].dim_value
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    for node in graph.node:  # the network now writes raw_logits; the stack writes the output
        node.output[:] = [RAW if o == out else o for o in node.output]
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
            _const("stack/d", d),
            _const("stack/e", e),
            _const("stack/half", 0.5),
            _const("stack/minus_half", -0.5),
            # the quality plane's mean, as training.train.model.quality_inputs reads it
            n("Slice", [x, "stack/start", "stack/end", "stack/axis1"], ["stack/plane"]),
            reduce_mean(opset, "stack/plane", "stack/value"),
            n("Greater", ["stack/value", "stack/unknown"], ["stack/known_bool"]),
            n("Cast", ["stack/known_bool"], ["stack/known"], to=TensorProto.FLOAT),
            n("Relu", ["stack/value"], ["stack/value_pos"]),
            n("Mul", ["stack/value_pos", "stack/known"], ["stack/logq"]),
            n("Gather", [RAW, "stack/i1"], ["stack/l1"], axis=1),
            n("Gather", [RAW, "stack/i0"], ["stack/l0"], axis=1),
            n("Sub", ["stack/l1", "stack/l0"], ["stack/z2"]),
            n("Squeeze", ["stack/z2", "stack/axis1"], ["stack/z"]),
            n("Mul", ["stack/a", "stack/z"], ["stack/az"]),
            n("Mul", ["stack/b", "stack/logq"], ["stack/bq"]),
            n("Add", ["stack/az", "stack/bq"], ["stack/azbq"]),
            n("Add", ["stack/azbq", "stack/c"], ["stack/s"]),
            n("Mul", ["stack/d", "stack/z"], ["stack/dz"]),
            n("Add", ["stack/dz", "stack/e"], ["stack/bare"]),
            n("Sub", ["stack/s", "stack/bare"], ["stack/delta"]),
            n("Mul", ["stack/known", "stack/delta"], ["stack/kdelta"]),
            n("Add", ["stack/bare", "stack/kdelta"], ["stack/zs"]),
            n("Unsqueeze", ["stack/zs", "stack/axis1"], ["stack/col"]),
            n("Mul", ["stack/col", "stack/minus_half"], ["stack/neg"]),
            n("Mul", ["stack/col", "stack/half"], ["stack/pos"]),
            n("Concat", ["stack/neg", "stack/pos"], [out], axis=1),
        ]
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def strip_stack(path: Path) -> bool:
    """Take an appended stack off the ONNX file again (its network's own logits as the output); False if
    it had none. Restacking a stacked model so fits the new stack on the network, not on the old stack."""
    model = onnx.load(str(path))
    graph = model.graph
    out = graph.output[0].name
    if not any(RAW in node.output for node in graph.node):
        return False
    kept = [node for node in graph.node if not _appended(node)]
    for node in kept:
        node.output[:] = [out if o == RAW else o for o in node.output]
    del graph.node[:]
    graph.node.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return True


def _appended(node: onnx.NodeProto) -> bool:
    """A node of the stack: it reads a stack tensor, or writes one other than the network's logits."""
    return any(n.startswith("stack/") for n in node.input) or any(
        o.startswith("stack/") and o != RAW for o in node.output
    )
