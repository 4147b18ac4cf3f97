"""The one image loader (training/images.py): EXIF-upright RGB for labelling and the evaluation alike."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from training.evaluate import baselines
from training.images import as_png, decode_rgb, load_rgb
from training.label.distortions import distort

ROTATE_90_CW = 6  # EXIF orientation: the stored pixels are shown turned by 90 degrees


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(data.astronaut()[::4, ::2])  # 128 high, 256 wide: a turn shows in the shape


def test_an_exif_rotated_photo_is_loaded_upright(photo: Image.Image, tmp_path) -> None:
    exif = Image.Exif()
    exif[0x0112] = ROTATE_90_CW
    path = tmp_path / "rotated.jpg"
    path.write_bytes(encoded(photo, "JPEG", quality=95, exif=exif.tobytes()))
    upright = load_rgb(path)
    assert upright.shape == (256, 128, 3)  # width and height swapped, as a viewer shows it
    assert np.array_equal(upright, np.asarray(decode_rgb(path.read_bytes())))
    # the labeller distorts the upright decode: against it PSNR and SSIM see the JPEG loss alone;
    # against the stored, unturned pixels (what ignoring the orientation gave) they saw another picture
    data, _ = distort(decode_rgb(path.read_bytes()), "jpeg", 1, 0, "rotated.jpg")
    distorted = np.asarray(decode_rgb(data))
    stored = np.asarray(Image.open(path).convert("RGB"))
    assert stored.shape == (128, 256, 3)
    assert baselines.psnr(upright, distorted) > 25 > 10 > baselines.psnr(stored, distorted)
    assert baselines.ssim(upright, distorted) > 0.9 > 0.1 > baselines.ssim(stored, distorted)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_every_allowed_format_decodes_to_rgb(photo: Image.Image, fmt: str) -> None:
    """No format falls back to another decoder (Pillow 13 has no MPO plugin, and none is asked for)."""
    img = decode_rgb(encoded(photo.convert("P") if fmt == "GIF" else photo, fmt))
    assert img.mode == "RGB" and img.size == photo.size


def test_as_png_keeps_the_pixels_and_drops_the_jpeg_header(photo: Image.Image) -> None:
    jpeg = encoded(photo, "JPEG", quality=40)
    png = as_png(jpeg)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(np.asarray(decode_rgb(png)), np.asarray(decode_rgb(jpeg)))
