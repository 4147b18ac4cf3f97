"""The model contract: ONNX metadata written by export, read back by the service."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import make_tiny_model

from app.contract import ContractError, ModelContract
from app.engine import UtilityModel
from app.preprocess import PreprocessSpec

SPEC = PreprocessSpec(size=32)


def test_metadata_round_trips_with_a_default_threshold():
    contract = ModelContract(task="detection", version="v7", preprocess=SPEC, training={"a": 1}, threshold=0.3)
    meta = contract.to_metadata()
    assert meta["utility.threshold"] == "0.3"
    assert ModelContract.from_metadata(meta) == contract


def test_no_threshold_key_means_one_half():
    meta = ModelContract(task="classification", version="v1", preprocess=SPEC).to_metadata()
    del meta["utility.threshold"]
    assert ModelContract.from_metadata(meta).threshold == 0.5


@pytest.mark.parametrize("raw", ["high", "", "0", "1", "1.5", "-0.2", "nan", "inf"])
def test_a_malformed_threshold_is_refused_naming_the_key(raw: str):
    meta = ModelContract(task="classification", version="v1", preprocess=SPEC).to_metadata()
    with pytest.raises(ContractError, match=r"utility\.threshold"):
        ModelContract.from_metadata({**meta, "utility.threshold": raw})


def test_a_model_with_a_malformed_threshold_fails_to_load(tmp_path: Path):
    folder = make_tiny_model(tmp_path, "odd", metadata={"utility.threshold": "0.5x"})
    with pytest.raises(ContractError, match=r"utility\.threshold.*'0\.5x'"):
        UtilityModel("odd", folder, ["CPUExecutionProvider"])
