"""Fixtures shared by every test: a tiny model folder, and the service on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from support import make_settings, make_tiny_model, serve


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    make_tiny_model(d, "tiny")
    return d


@pytest.fixture
async def client(models_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(models_dir)) as c:
        yield c
