"""Serving and training prepare pixels identically, on real photos, DCT-domain JPEG scaling included.

Training calls ``app.preprocess.preprocess_bytes(Path(p).read_bytes(), spec)`` (training/predict.py,
for export and quantisation; training/train/dataset.py caches the same decode). The service reads
the bytes from the HTTP body and hands them to the ``Assessor``, which decodes them with
``jpeg_draft`` (libjpeg's 1/2, 1/4, 1/8 scaling) before batching. This test captures the tensor the
service queues for the model and compares it, bit for bit, with what the training function returns
for the same bytes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from support import make_settings, make_tiny_model, serve

from app.preprocess import preprocess_bytes

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
# 1920x1080 is the bench's large size; 640x480 a camera default; 224 needs no DCT scaling.
SIZES = ((224, 224), (640, 480), (1920, 1080))


def jpeg(name: str, size: tuple[int, int], quality: int = 90) -> bytes:
    img = Image.fromarray(getattr(skdata, name)()).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture
def photos() -> list[tuple[str, bytes]]:
    return [(f"{n}-{w}x{h}", jpeg(n, (w, h))) for n in PHOTOS for w, h in SIZES]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("input_size", "native_crop"),
    [
        pytest.param(224, False, id="input-224"),
        pytest.param(96, False, id="input-96"),
        pytest.param(128, True, id="two-views-128"),  # the bundled classification model's layout
    ],
)
async def test_served_tensor_is_the_training_tensor(tmp_path: Path, photos, input_size: int, native_crop: bool) -> None:
    models = tmp_path / "models"
    make_tiny_model(models, "parity", size=input_size, native_crop=native_crop)
    async with serve(make_settings(models)) as client:
        served = client.app.state.registry.get("parity")  # type: ignore[attr-defined]
        assert served.model.spec.draft != native_crop, "DCT-domain JPEG scaling unless native pixels are needed"
        queued: list[np.ndarray] = []
        submit = served.batcher.submit

        async def spy(x: np.ndarray, timeout: float) -> float:
            queued.append(x.copy())
            return await submit(x, timeout)

        served.batcher.submit = spy  # type: ignore[method-assign]
        for label, body in photos:
            for how in ("raw", "multipart"):
                queued.clear()
                if how == "raw":
                    r = await client.post("/utility", content=body, headers={"content-type": "image/jpeg"})
                else:
                    r = await client.post("/utility", files={"file": ("photo.jpg", body, "image/jpeg")})
                assert r.status_code == 200, (label, how, r.text)
                assert len(queued) == 1
                trained = preprocess_bytes(body, served.model.spec)  # what training computes for this file
                assert queued[0].dtype == trained.dtype == np.float32
                assert queued[0].shape == trained.shape == (6 if native_crop else 3, input_size, input_size)
                assert np.array_equal(queued[0], trained), f"{label} via {how}: serving differs from training"


def test_dct_scaling_really_happens_on_large_photos() -> None:
    """The parity above covers the scaled path: a 1920x1080 JPEG decodes at reduced size."""
    from app.preprocess import PreprocessSpec, decode_image

    body = jpeg("astronaut", (1920, 1080))
    assert decode_image(body, PreprocessSpec(size=224)).size == (480, 270)  # 1/4 scale, still covers 224
    assert decode_image(body, PreprocessSpec(size=224, jpeg_draft=False)).size == (1920, 1080)
