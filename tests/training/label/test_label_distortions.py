"""Distortions: 9 levels each (near-pristine JPEG 3, pristine 1), deterministic, JPEG stored as the
encoder's own bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from training.label.distortions import DISTORTIONS, PRISTINE, distort, get_distortion, levels_of


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(data.chelsea())


def decoded(blob: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"), dtype=np.float64)


def test_registry_has_the_paper_distortion_and_more() -> None:
    assert {"jpeg", "blur", "noise", "downscale"} <= set(DISTORTIONS)
    for d in DISTORTIONS.values():
        assert len(d.levels) == {"jpeg-hq": 3, PRISTINE: 1}.get(d.name, 9)
    with pytest.raises(KeyError, match="unknown distortion"):
        get_distortion("rain")
    with pytest.raises(ValueError, match=r"levels 1\.\.9"):
        get_distortion("jpeg").value(10)


def test_jpeg_is_the_encoders_bytes(photo: Image.Image) -> None:
    blob, ext = distort(photo, "jpeg", 5, seed=0, source="chelsea.png")
    quality = int(get_distortion("jpeg").value(5))
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False)
    assert ext == "jpg"
    assert blob == buf.getvalue()
    assert Image.open(io.BytesIO(blob)).format == "JPEG"


def test_jpeg_levels_get_stronger(photo: Image.Image) -> None:
    sizes = [len(distort(photo, "jpeg", level, 0, "x")[0]) for level in range(1, 10)]
    assert sizes == sorted(sizes, reverse=True)
    assert len(set(sizes)) == 9


@pytest.mark.parametrize("name", ["blur", "noise", "downscale"])
def test_pixel_distortions_grow_with_level(photo: Image.Image, name: str) -> None:
    ref = np.asarray(photo, dtype=np.float64)
    errors = []
    for level in (1, 5, 9):
        blob, ext = distort(photo, name, level, seed=0, source="chelsea.png")
        assert ext == "png"
        out = decoded(blob)
        assert out.shape == ref.shape
        errors.append(float(np.mean((out - ref) ** 2)))
    assert 0 < errors[0] < errors[1] < errors[2]


def test_noise_is_deterministic_per_source_and_level(photo: Image.Image) -> None:
    a = distort(photo, "noise", 3, seed=0, source="a.png")[0]
    assert a == distort(photo, "noise", 3, seed=0, source="a.png")[0]
    assert a != distort(photo, "noise", 3, seed=0, source="b.png")[0]
    assert a != distort(photo, "noise", 3, seed=1, source="a.png")[0]


def test_each_distortion_makes_the_requested_levels_it_has() -> None:
    assert levels_of("jpeg", tuple(range(1, 10))) == tuple(range(1, 10))
    assert levels_of("jpeg-hq", tuple(range(1, 10))) == (1, 2, 3)
    assert levels_of(PRISTINE, tuple(range(1, 10))) == (1,)
    with pytest.raises(ValueError, match=r"jpeg-hq has levels 1\.\.3; none of \[5\]"):
        levels_of("jpeg-hq", (5,))


def test_near_pristine_jpeg_is_milder_than_level_1(photo: Image.Image) -> None:
    sizes = [len(distort(photo, "jpeg-hq", level, 0, "x")[0]) for level in (1, 2, 3)]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] > len(distort(photo, "jpeg", 1, 0, "x")[0])


def test_reencoded_jpeg_names_the_second_quality_and_keeps_the_first_damage(photo: Image.Image) -> None:
    """jpeg-reencode: the header says 75-95 whatever the level; the pixels are the first pass's."""
    from training.evaluate.baselines import jpeg_quality

    original = np.asarray(photo, dtype=np.float64)
    for level in (1, 5, 9):
        blob, ext = distort(photo, "jpeg-reencode", level, 0, "x")
        assert ext == "jpg" and blob == distort(photo, "jpeg-reencode", level, 0, "x")[0]
        assert 75 <= jpeg_quality(blob) <= 95
        once = decoded(distort(photo, "jpeg", level, 0, "x")[0])
        again = decoded(blob)
        assert np.abs(again - once).mean() < np.abs(again - original).mean()
    # the damage grows with the level though the header does not say so
    errors = [np.abs(decoded(distort(photo, "jpeg-reencode", lv, 0, "x")[0]) - original).mean() for lv in (1, 9)]
    assert errors[1] > 2 * errors[0]
