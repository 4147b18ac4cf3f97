"""The one image loader of the training side: every pixel, EXIF-upright, RGB.

It is :func:`app.preprocess.decode_image` at full resolution (no JPEG draft), the decode the
service runs before it resizes: labelling distorts this image, and the evaluation's baselines
(PSNR, SSIM, detectors on pristine photos) compare against it, so a photo stored rotated by its
EXIF orientation is the same upright picture everywhere.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from app.preprocess import PreprocessSpec, decode_image

FULL_RESOLUTION = PreprocessSpec(jpeg_draft=False)


def decode_rgb(data: bytes) -> Image.Image:
    """Encoded bytes -> upright RGB image (first frame, EXIF orientation applied, any mode to RGB)."""
    return decode_image(data, FULL_RESOLUTION)


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 array, decoded as :func:`decode_rgb`."""
    return np.asarray(decode_rgb(Path(path).read_bytes()))


def as_png(data: bytes) -> bytes:
    """The same pixels, losslessly as PNG: what a model sees of a file whose header names no quality."""
    buf = io.BytesIO()
    decode_rgb(data).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
