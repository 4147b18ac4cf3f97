"""The JPEG quality factor read back from a file's quantisation table (app/jpegquality.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from app.jpegquality import image_quality, table_quality


def _jpeg(img: Image.Image, **kw) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_every_pillow_quality_is_read_back_exactly() -> None:
    photo = Image.fromarray(skdata.chelsea())
    assert [image_quality(_jpeg(photo, quality=q)) for q in range(1, 101)] == list(range(1, 101))


def test_greyscale_progressive_and_subsampled_jpegs_are_read_too() -> None:
    photo = Image.fromarray(skdata.chelsea())
    assert image_quality(_jpeg(photo.convert("L"), quality=23)) == 23
    assert image_quality(_jpeg(photo, quality=61, progressive=True, subsampling="4:4:4")) == 61


def test_a_table_of_its_own_gets_the_nearest_ijg_quality() -> None:
    """A camera's table, here the quality-80 table with every step a little coarser."""
    base = np.asarray(_jpeg(Image.fromarray(skdata.chelsea()), quality=80).quantization[0])
    q = table_quality(base + 1)
    assert 75 <= q < 80
    with pytest.raises(ValueError, match="64 values"):
        table_quality(base[:10])


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_other_formats_have_no_quality(fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(skdata.chelsea()).save(buf, format=fmt)
    assert image_quality(Image.open(io.BytesIO(buf.getvalue()))) is None
