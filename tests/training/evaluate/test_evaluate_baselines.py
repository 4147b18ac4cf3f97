"""Fig. 1's baseline scores on small real inputs: scikit-image photos, JPEG-compressed with Pillow."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image
from skimage import data

from training.evaluate import baselines, nriqa


def jpeg(arr: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB" if arr.ndim == 3 else "L"))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return data.astronaut()[::2, ::2].copy()  # 256x256 RGB, a real photo


def test_psnr_of_a_known_mse(photo: np.ndarray) -> None:
    # +-10 on every pixel of a real photo: MSE is exactly 100, PSNR = 10 log10(255^2 / 100)
    shifted = np.where(photo <= 245, photo.astype(int) + 10, photo.astype(int) - 10).astype(np.uint8)
    assert baselines.psnr(photo, shifted) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-9)
    assert baselines.psnr(photo, photo) == math.inf


def test_ssim_and_quality_order_with_jpeg(photo: np.ndarray) -> None:
    assert baselines.ssim(photo, photo) == pytest.approx(1.0)
    scores = []
    for q in (90, 30, 5):
        raw, dec = jpeg(photo, q)
        assert baselines.jpeg_quality(raw) == q
        scores.append((baselines.psnr(photo, dec), baselines.ssim(photo, dec)))
    assert scores[0][0] > scores[1][0] > scores[2][0]
    assert 1 > scores[0][1] > scores[1][1] > scores[2][1] > 0
    png = io.BytesIO()
    Image.fromarray(photo).save(png, format="PNG")
    assert baselines.jpeg_quality(png.getvalue()) is None


def test_energy_hand_computed() -> None:
    e = baselines.energy(np.array([[0.0, 0.0], [2.0, 2.0]]), temperature=2.0)
    assert e[0] == pytest.approx(-2 * math.log(2))
    assert e[1] == pytest.approx(-2 * (1 + math.log(2)))


def test_no_reference_metrics_rise_with_compression(photo: np.ndarray) -> None:
    full = data.astronaut()  # 512x512: NIQE needs enough 96-pixel patches for its covariance
    _, mild = jpeg(full, 95)
    _, harsh = jpeg(full, 3)
    assert nriqa.niqe(harsh) > nriqa.niqe(mild)
    assert nriqa.brisque(harsh) > nriqa.brisque(mild)
    with pytest.raises(ValueError, match="NIQE needs"):
        nriqa.niqe(photo[:100, :100])
