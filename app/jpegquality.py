"""The JPEG quality factor an image was stored at, read from its luma quantisation table.

The one home of this estimate: the service's quality plane (``PreprocessSpec.quality_map``), the
training cache and the evaluation's quality-factor baseline all call :func:`table_quality`.
Encoders that scale the IJG tables (libjpeg, Pillow, most web pipelines) give back their exact
setting; cameras and editors with tables of their own get the nearest IJG-equivalent quality.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

# The IJG standard luminance table (JPEG Annex K), any order: only the sorted values are compared.
_IJG_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17,
             22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78,
             87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]  # fmt: skip
JPEG_FORMATS = ("JPEG", "MPO")


@functools.cache
def _scaled_tables() -> np.ndarray:
    """(100, 64): the sorted luma table libjpeg writes at quality 1..100 (baseline, 8-bit)."""
    base = np.asarray(_IJG_LUMA, dtype=np.float64)
    q = np.arange(1, 101, dtype=np.float64)[:, None]
    scale = np.where(q < 50, np.floor(5000 / q), 200 - 2 * q)
    return np.sort(np.clip(np.floor((base * scale + 50) / 100), 1, 255), axis=1)


def table_quality(luma: list[int] | np.ndarray) -> int:
    """The IJG quality (1..100) whose luma table is nearest to ``luma`` (64 values, any order)."""
    values = np.sort(np.asarray(luma, dtype=np.float64).ravel())
    if values.shape != (64,):
        raise ValueError(f"a quantisation table has 64 values, got {values.size}")
    err = np.abs(_scaled_tables() - values).sum(axis=1)
    return int(np.argmin(err)) + 1  # ties go to the lower quality, as a scan from 1 up would


def image_quality(img: Image.Image) -> int | None:
    """The stored quality of an opened JPEG (header only, nothing decoded); None for other formats."""
    tables = getattr(img, "quantization", None)
    if img.format not in JPEG_FORMATS or not tables or 0 not in tables:
        return None
    try:
        return table_quality(tables[0])
    except ValueError:
        return None
