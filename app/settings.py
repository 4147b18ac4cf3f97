"""All service settings in one place, read from ``UTILITY_*`` environment variables.

Bad values stop the service at start-up with a message naming the variable.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AnyHttpUrl, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

KNOWN_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "OpenVINOExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "CPUExecutionProvider",
)
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parse_providers(value: str | list[str]) -> list[str]:
    """Execution providers from a comma-separated string or a list; ValueError for none or unknown ones."""
    providers = [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else list(value)
    if not providers:
        raise ValueError("at least one execution provider is needed")
    unknown = [p for p in providers if p not in KNOWN_PROVIDERS]
    if unknown:
        raise ValueError(f"unknown execution providers {unknown}; known: {', '.join(KNOWN_PROVIDERS)}")
    return providers


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UTILITY_", extra="ignore", frozen=True)

    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    models_dir: Path = Path("models")
    default_model: str | None = None
    providers: Annotated[list[str], NoDecode] = list(DEFAULT_PROVIDERS)
    # One thread per call and one call per core on CPU: no intra-op barriers for decode threads to
    # stall, about a quarter less CPU per image than one call on every core (docs/performance.md).
    intra_op_threads: int = Field(1, ge=0, le=256, description="onnxruntime threads per call; 0 = one per core")
    instances: int = Field(
        0, ge=0, le=64, description="concurrent model calls; 0 = cores / intra_op_threads on CPU, 1 on GPU"
    )
    # On the bundled int8 model a batch of 16 takes ~50 ms on one thread: at concurrency 64 it gave
    # 10 % more images/s than 8 at the same p99 (bench/results/sweep-int8.md). For a model ~10x
    # heavier per image (fp32, 224 px) use 8: every request in a batch waits for all of it.
    max_batch_size: int = Field(16, ge=1, le=1024)
    max_wait_ms: float = Field(4.0, ge=0.0, le=1000.0)
    queue_size: int = Field(256, ge=1, le=100_000)
    request_timeout_s: float = Field(10.0, gt=0.0, le=600.0)
    idle_timeout_s: float = Field(5.0, gt=0.0, le=3600.0, description="close a connection silent this long")
    # A backstop far above the queue: a small queue must answer overload with the app's 429, not 503.
    max_connections: int = Field(1024, ge=1, le=1_000_000, description="open connections; beyond, 503")
    decode_workers: int = Field(0, ge=0, le=256, description="threads decoding images; 0 = one per core")
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=1)
    # 256 MB takes a 40 MP RGB photo (160 MB) and refuses a 40 MP RGBA or 16-bit image (~630 MB).
    max_decode_mb: int = Field(256, ge=1, description="estimated peak memory of one decode; beyond, 413")
    decode_budget_mb: int = Field(1024, ge=1, description="memory all decodes in flight share; beyond, they wait")
    max_batch_items: int = Field(64, ge=1, le=10_000)
    warmup: bool = True
    log_level: str = "INFO"
    log_json: bool = True
    access_log: bool = Field(True, description="one log line per request (about 0.1 ms of CPU each)")
    admin_token: str | None = Field(None, min_length=16, description="enables /admin routes when set")
    gate_targets: Annotated[dict[str, AnyHttpUrl], NoDecode] = {}
    gate_timeout_s: float = Field(30.0, gt=0.0, le=600.0)

    @field_validator("providers", mode="before")
    @classmethod
    def _providers(cls, value: object) -> object:
        return parse_providers(value) if isinstance(value, str | list) else value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("gate_targets", mode="before")
    @classmethod
    def _targets_json(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            targets = json.loads(value or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
        if not isinstance(targets, dict):
            raise ValueError("must be a JSON object of target name -> upstream base URL")
        return targets

    @field_validator("gate_targets")
    @classmethod
    def _target_names(cls, value: dict[str, AnyHttpUrl]) -> dict[str, AnyHttpUrl]:
        for name in value:
            if not name or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"gate target name {name!r} must be letters, digits, '-' or '_'")
        return value

    @model_validator(mode="after")
    def _queue_fits_batch(self) -> Settings:
        if self.queue_size < self.max_batch_size:
            raise ValueError(
                f"UTILITY_QUEUE_SIZE ({self.queue_size}) must be at least "
                f"UTILITY_MAX_BATCH_SIZE ({self.max_batch_size})"
            )
        return self

    @model_validator(mode="after")
    def _decode_fits_budget(self) -> Settings:
        if self.decode_budget_mb < self.max_decode_mb:
            raise ValueError(
                f"UTILITY_DECODE_BUDGET_MB ({self.decode_budget_mb}) must be at least "
                f"UTILITY_MAX_DECODE_MB ({self.max_decode_mb})"
            )
        return self

    @property
    def cpu_count(self) -> int:
        return cpu_count()

    @property
    def decode_threads(self) -> int:
        return self.decode_workers or self.cpu_count

    def inference_instances(self, provider: str) -> int:
        """Concurrent model calls: as set, else enough single-threaded calls to fill the cores (CPU)."""
        if self.instances:
            return self.instances
        if provider != "CPUExecutionProvider":
            return 1
        threads = self.intra_op_threads or self.cpu_count
        return max(1, self.cpu_count // threads)


def env_name(field: str) -> str:
    return f"{Settings.model_config['env_prefix']}{field.upper()}"


def describe_errors(exc: ValidationError, flags: dict[str, str] | None = None) -> list[str]:
    """One line per bad value, named by its environment variable (or by ``flags[field]``, the option given)."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        message = error["msg"].removeprefix("Value error, ")
        if not field:  # a rule across fields names its variables itself
            lines.append(message)
            continue
        name = (flags or {}).get(field) or env_name(field)
        given = error.get("input")
        got = f" (got {given!r})" if isinstance(given, str | int | float) else ""
        lines.append(f"{name}: {message}{got}")
    return lines


@lru_cache
def get_settings() -> Settings:
    return Settings()
