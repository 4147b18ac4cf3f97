"""The Triton route: a models/ folder is a Triton model repository that Triton's onnxruntime backend can load.

Each config.pbtxt is parsed into Triton's own ModelConfig protobuf (the message tritonclient ships), and its
inputs and outputs are checked against the ONNX graph they describe, as Triton checks them at load time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import onnxruntime as ort
import pytest
import tritonclient
from google.protobuf import text_format
from support import make_tiny_model
from support.deploy import ROOT


def model_config_pb2():
    # Loaded from its file: tritonclient.grpc's package __init__ would import grpcio, which is not needed here.
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PB = model_config_pb2()


def repositories(tmp: Path) -> list[Path]:
    made = tmp / "models"
    make_tiny_model(made, "tiny")
    make_tiny_model(made, "tiny-detection", task="detection", size=48)
    shipped = ROOT / "models"
    has_models = shipped.is_dir() and any(shipped.glob("*/config.pbtxt"))
    return [made, shipped] if has_models else [made]


def check_model_folder(folder: Path) -> None:
    config = text_format.Parse((folder / "config.pbtxt").read_text(), PB.ModelConfig())
    assert config.name == folder.name, "Triton requires the config's name to be the folder's"
    assert config.backend == "onnxruntime"
    versions = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
    assert versions, f"{folder}: no numeric version folder"
    for version in versions:
        session = ort.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
        graph_in = {i.name: i for i in session.get_inputs()}
        graph_out = {o.name: o for o in session.get_outputs()}
        assert {i.name for i in config.input} == set(graph_in)
        assert {o.name for o in config.output} == set(graph_out)
        for tensors, graph in ((config.input, graph_in), (config.output, graph_out)):
            for t in tensors:
                shape = graph[t.name].shape
                assert PB.DataType.Name(t.data_type) == "TYPE_FP32" and graph[t.name].type == "tensor(float)"
                if config.max_batch_size > 0:  # Triton's dims leave out the batch dimension, which must be dynamic
                    assert not isinstance(shape[0], int), f"{t.name}: batch dimension is fixed ({shape})"
                    shape = shape[1:]
                assert list(t.dims) == shape, f"{folder.name}/{t.name}: config {list(t.dims)} vs graph {shape}"
    if config.HasField("dynamic_batching"):
        assert all(b <= config.max_batch_size for b in config.dynamic_batching.preferred_batch_size)


def test_model_repositories_load_as_triton_configs(tmp_path: Path):
    for repo in repositories(tmp_path):
        folders = [p for p in repo.iterdir() if p.is_dir()]
        assert folders
        for folder in folders:
            check_model_folder(folder)


def test_a_broken_config_is_caught(tmp_path: Path):
    folder = make_tiny_model(tmp_path / "models", "tiny")
    config = folder / "config.pbtxt"
    config.write_text(config.read_text().replace("dims: [ 2 ]", "dims: [ 3 ]"))
    with pytest.raises(AssertionError, match="config \\[3\\] vs graph \\[2\\]"):
        check_model_folder(folder)
    config.write_text(config.read_text().replace("max_batch_size", "max_batchsize"))
    with pytest.raises(text_format.ParseError):
        check_model_folder(folder)
