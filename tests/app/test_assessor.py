"""The request path without HTTP: model -> decode -> queue -> batch -> predict -> verdict."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import BLUE, RED, image_bytes, make_settings

from app.assessor import Assessor
from app.preprocess import ImageDecodeError
from app.registry import ModelRegistry, UnknownModelError
from app.verdict import ModelInfo

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def assessor_on(models_dir: Path) -> AsyncIterator[Assessor]:
    registry = ModelRegistry(make_settings(models_dir))
    await registry.load_all()
    assessor = Assessor(registry, decode_threads=2)
    try:
        yield assessor
    finally:
        await registry.close()
        assessor.close()


async def test_bytes_in_verdict_out(models_dir: Path):
    async with assessor_on(models_dir) as assessor:
        red = await assessor.assess(image_bytes(RED), None, 0.5, filename="red.jpg")
        blue = await assessor.assess(image_bytes(BLUE), "tiny", 0.5)
    assert red.useful and red.filename == "red.jpg" and red.model == ModelInfo("tiny", "test-1", "classification")
    assert not blue.useful and blue.label == "non-useful" and blue.threshold == 0.5


async def test_unknown_model_and_unreadable_bytes_are_refused_before_the_queue(models_dir: Path):
    async with assessor_on(models_dir) as assessor:
        with pytest.raises(UnknownModelError):
            assessor.check_model("nope")
        with pytest.raises(ImageDecodeError):
            await assessor.assess(b"not an image", None, 0.5)
        assert assessor.registry.get(None).batcher.depth == 0
