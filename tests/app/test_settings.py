"""Settings fail fast on bad values and are all documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_env_values_are_parsed(monkeypatch):
    monkeypatch.setenv("UTILITY_PROVIDERS", "CPUExecutionProvider")
    monkeypatch.setenv("UTILITY_MAX_BATCH_SIZE", "32")
    monkeypatch.setenv("UTILITY_GATE_TARGETS", '{"vision": "http://127.0.0.1:9000"}')
    s = Settings()
    assert s.providers == ["CPUExecutionProvider"] and s.max_batch_size == 32
    assert str(s.gate_targets["vision"]) == "http://127.0.0.1:9000/"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("UTILITY_PROVIDERS", "MagicExecutionProvider"),
        ("UTILITY_PROVIDERS", ""),
        ("UTILITY_MAX_BATCH_SIZE", "0"),
        ("UTILITY_MAX_WAIT_MS", "-1"),
        ("UTILITY_PORT", "70000"),
        ("UTILITY_LOG_LEVEL", "LOUD"),
        ("UTILITY_ADMIN_TOKEN", "short"),
        ("UTILITY_GATE_TARGETS", '{"vision": "not a url"}'),
        ("UTILITY_GATE_TARGETS", '{"a/b": "http://127.0.0.1:9000"}'),
        ("UTILITY_QUEUE_SIZE", "2"),  # smaller than max_batch_size
        ("UTILITY_MAX_DECODE_MB", "0"),
        ("UTILITY_DECODE_BUDGET_MB", "100"),  # smaller than one decode may take
    ],
)
def test_bad_values_are_refused(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError):
        Settings()


def test_every_setting_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [f"UTILITY_{name.upper()}" for name in Settings.model_fields if f"UTILITY_{name.upper()}" not in readme]
    assert not missing, f"README lacks {missing}"


@pytest.mark.parametrize(
    ("env", "provider", "cpus", "want"),
    [
        pytest.param({}, "CPUExecutionProvider", 2, 2, id="default-cpu: one single-threaded call per core"),
        pytest.param({}, "CUDAExecutionProvider", 16, 1, id="default-gpu: one call"),
        pytest.param({"intra_op_threads": 0}, "CPUExecutionProvider", 8, 1, id="all-core calls: one at a time"),
        pytest.param({"intra_op_threads": 2}, "CPUExecutionProvider", 8, 4, id="two threads each"),
        pytest.param({"instances": 3}, "CPUExecutionProvider", 2, 3, id="explicit"),
    ],
)
def test_inference_instances(env, provider, cpus, want, monkeypatch):
    monkeypatch.setattr(Settings, "cpu_count", property(lambda self: cpus))
    assert Settings(**env).inference_instances(provider) == want
