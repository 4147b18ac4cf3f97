"""Distortions by name, each with 9 levels (level 1 = mildest, 9 = strongest).

A JPEG-distorted image is the encoder's own bytes, stored as they came out. The other distortions
work on pixels and are stored losslessly (PNG), so no second distortion creeps in. Levels were
chosen by measurement so that the labels span useful to non-useful (docs/labels.md).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Distortion:
    name: str
    param: str  # what the level values mean
    levels: tuple[float, ...]  # the parameter of level 1, 2, ...; mildest first
    encode: Callable[[Image.Image, float, np.random.Generator], bytes]
    ext: str

    def value(self, level: int) -> float:
        if not 1 <= level <= len(self.levels):
            raise ValueError(f"{self.name} has levels 1..{len(self.levels)}, got {level}")
        return self.levels[level - 1]


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def jpeg(img: Image.Image, quality: float, rng: np.random.Generator) -> bytes:
    """Pillow/libjpeg baseline JPEG, 4:2:0, at ``quality``; these bytes are what gets stored."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality), subsampling="4:2:0", optimize=False)
    return buf.getvalue()


JPEG_LEVELS = (50, 30, 20, 15, 10, 8, 6, 4, 2)  # the paper's 9 levels, chosen by measurement (docs/labels.md)
REENCODE_QUALITY = (75, 95)  # the second pass of jpeg-reencode: what thumbnailers, CDNs and web uploads re-save at


def jpeg_reencoded(img: Image.Image, quality: float, rng: np.random.Generator) -> bytes:
    """JPEG at ``quality``, decoded and saved again at a seeded quality in 75-95, as an image pipeline
    re-saves what it receives: the header then names the second quality, the pixels keep the first's
    damage. A predictor that trusts the header alone calls these useful."""
    first = Image.open(io.BytesIO(jpeg(img, quality, rng)))
    first.load()
    return jpeg(first.convert("RGB"), int(rng.integers(REENCODE_QUALITY[0], REENCODE_QUALITY[1] + 1)), rng)


def gaussian_blur(img: Image.Image, sigma: float, rng: np.random.Generator) -> bytes:
    return _png(np.asarray(img.filter(ImageFilter.GaussianBlur(radius=sigma))))


def gaussian_noise(img: Image.Image, sigma: float, rng: np.random.Generator) -> bytes:
    """Additive white Gaussian noise, sigma in 8-bit grey levels, clipped to [0, 255]."""
    arr = np.asarray(img, dtype=np.float32)
    noisy = arr + rng.normal(0.0, sigma, arr.shape).astype(np.float32)
    return _png(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


def downscale(img: Image.Image, factor: float, rng: np.random.Generator) -> bytes:
    """Shrink by ``factor`` (box filter, as a camera or thumbnailer would), then bicubic back to size."""
    small = (max(1, round(img.width / factor)), max(1, round(img.height / factor)))
    low = img.resize(small, Image.Resampling.BOX)
    return _png(np.asarray(low.resize(img.size, Image.Resampling.BICUBIC)))


DISTORTIONS: dict[str, Distortion] = {
    d.name: d
    for d in (
        Distortion("jpeg", "quality", JPEG_LEVELS, jpeg, "jpg"),
        # near-pristine qualities, as cameras and web pipelines store photos: these must read as useful
        Distortion("jpeg-hq", "quality", (95, 90, 80), jpeg, "jpg"),
        # the 9 JPEG levels, then re-saved at 75-95: the header no longer says how compressed it is
        Distortion("jpeg-reencode", "quality", JPEG_LEVELS, jpeg_reencoded, "jpg"),
        Distortion("blur", "sigma", (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0), gaussian_blur, "png"),
        Distortion("noise", "sigma", (5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 80.0, 100.0, 130.0), gaussian_noise, "png"),
        Distortion("downscale", "factor", (2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0), downscale, "png"),
    )
}


# The source photo itself, stored as its own bytes: its decisions are the reference, so it is
# useful whenever the source counts (the one row every labeller agrees on by definition).
PRISTINE = "pristine"
DISTORTIONS[PRISTINE] = Distortion(PRISTINE, "none", (0.0,), lambda img, _v, _rng: b"", "")


def levels_of(name: str, wanted: tuple[int, ...]) -> tuple[int, ...]:
    """The requested levels that ``name`` has (``jpeg-hq`` has 3, ``pristine`` 1); an error if none."""
    d = get_distortion(name)
    have = tuple(level for level in wanted if 1 <= level <= len(d.levels))
    if not have:
        raise ValueError(f"{name} has levels 1..{len(d.levels)}; none of {list(wanted)} requested")
    return have


def get_distortion(name: str) -> Distortion:
    if name not in DISTORTIONS:
        raise KeyError(f"unknown distortion {name!r}; known: {', '.join(DISTORTIONS)}")
    return DISTORTIONS[name]


def rng_for(seed: int, source: str, distortion: str, level: int) -> np.random.Generator:
    """A generator that depends only on (seed, source, distortion, level): reruns give the same pixels."""
    return np.random.default_rng([seed, zlib.crc32(source.encode()), zlib.crc32(distortion.encode()), level])


def distort(img: Image.Image, distortion: str, level: int, seed: int, source: str) -> tuple[bytes, str]:
    """The stored bytes of ``img`` at ``level`` of ``distortion``, and their file extension."""
    d = get_distortion(distortion)
    return d.encode(img, d.value(level), rng_for(seed, source, distortion, level)), d.ext
