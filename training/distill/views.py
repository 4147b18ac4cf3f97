"""Fresh views for distillation: one source photo -> one distorted *file*, as a client would send it.

Each view is a random crop (native resolution, sometimes rescaled), flipped, sometimes mixed with a
second photo, then distorted: JPEG at a log-uniform quality, a high-quality re-encode or the photo
untouched ("pristine"), Gaussian blur, noise, a downscale, or one of those followed by JPEG. Pixel
distortions stay lossless (no header quality, as the labels' PNG rows). Teacher and student then
read the same file through their own :class:`~app.preprocess.PreprocessSpec`, with the service's
decode: neither sees pixels the service would not.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app.preprocess import QUALITY_KEY, PreprocessSpec, decode_image, to_pixels
from training.images import decode_rgb
from training.label.distortions import downscale, gaussian_blur, gaussian_noise, jpeg

# (kind, probability): what a view is; the ranges below follow the labels' levels (docs/labels.md)
KINDS: tuple[tuple[str, float], ...] = (
    ("jpeg", 0.40),
    ("jpeg-hq", 0.08),
    ("pristine", 0.07),
    ("blur", 0.12),
    ("noise", 0.12),
    ("downscale", 0.12),
    ("mix", 0.09),
)
KIND_INDEX = {name: i for i, (name, _) in enumerate(KINDS)}
RANGES = {"jpeg": (2, 100), "jpeg-hq": (80, 100), "blur": (0.5, 8.0), "noise": (3.0, 130.0), "downscale": (1.5, 16.0)}
MAX_SIDE = 1024  # sources are kept at most this large (memory; crops are taken from it)


@dataclass(frozen=True)
class ViewSettings:
    min_area: float = 0.3  # of the source, for the random crop
    rescale_p: float = 0.3  # probability of a 0.5-1x area resize of the crop
    mixup_p: float = 0.15  # probability of blending a second photo in
    flip_p: float = 0.5


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def load_source(path: Path) -> Image.Image:
    """A source photo, upright RGB, its longer side at most :data:`MAX_SIDE` (box filter)."""
    img = decode_rgb(path.read_bytes())
    scale = MAX_SIDE / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BOX)
    return img


def random_crop(img: Image.Image, rng: np.random.Generator, s: ViewSettings) -> Image.Image:
    area = img.width * img.height * rng.uniform(s.min_area, 1.0)
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    w = min(img.width, max(16, round(math.sqrt(area * ratio))))
    h = min(img.height, max(16, round(math.sqrt(area / ratio))))
    left, top = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
    out = img.crop((left, top, left + w, top + h))
    if rng.random() < s.rescale_p:
        f = math.sqrt(rng.uniform(0.25, 1.0))
        out = out.resize((max(16, round(w * f)), max(16, round(h * f))), Image.Resampling.BOX)
    if rng.random() < s.flip_p:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return out


def mixup(a: Image.Image, b: Image.Image, rng: np.random.Generator) -> Image.Image:
    lam = rng.beta(1.0, 1.0)
    b = b.resize(a.size, Image.Resampling.BILINEAR)
    mixed = lam * np.asarray(a, np.float32) + (1 - lam) * np.asarray(b, np.float32)
    return Image.fromarray(np.clip(np.rint(mixed), 0, 255).astype(np.uint8), "RGB")


def _lossless(encoded: bytes) -> Image.Image:
    """The pixels of the PNG the label stage's encoder wrote (lossless: exactly the distorted pixels)."""
    img = Image.open(io.BytesIO(encoded))
    img.load()
    return img.convert("RGB")


def distort(img: Image.Image, kind: str, rng: np.random.Generator) -> tuple[bytes | Image.Image, float]:
    """JPEG bytes (the file) or a lossless image, and the kind's parameter (quality, sigma, factor)."""
    if kind in ("jpeg", "jpeg-hq"):
        q = round(log_uniform(rng, *RANGES[kind])) if kind == "jpeg" else int(rng.integers(80, 101))
        return jpeg(img, q, rng), float(q)
    if kind == "pristine":
        return img, 0.0
    if kind == "mix":
        first = str(rng.choice(["blur", "noise", "downscale"]))
        low, high = RANGES[first]
        value = log_uniform(rng, low, math.sqrt(low * high))  # the milder half: JPEG follows
        pixels = _pixel_distortion(img, first, value, rng)
        return jpeg(pixels, round(log_uniform(rng, 10, 95)), rng), value
    value = log_uniform(rng, *RANGES[kind])
    return _pixel_distortion(img, kind, value, rng), value


def _pixel_distortion(img: Image.Image, kind: str, value: float, rng: np.random.Generator) -> Image.Image:
    encode = {"blur": gaussian_blur, "noise": gaussian_noise, "downscale": downscale}[kind]
    return _lossless(encode(img, value, rng))


def as_inputs(file: bytes | Image.Image, specs: Sequence[PreprocessSpec]) -> list[np.ndarray]:
    """The file through each spec's service preprocessing: uint8 (C, S, S) per spec."""
    out = []
    for spec in specs:
        if isinstance(file, bytes):
            img = decode_image(file, spec)
        else:
            img = file.copy()
            img.info[QUALITY_KEY] = None  # a lossless file names no quality
        out.append(to_pixels(img, spec))
    return out


class ViewStream(torch.utils.data.IterableDataset):
    """An endless stream of (student uint8, teacher uint8, kind index, parameter) views.

    Seeded by (seed, start step, worker): a resumed run draws new views, never the same ones again.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        specs: tuple[PreprocessSpec, PreprocessSpec],
        seed: int,
        start: int = 0,
        settings: ViewSettings = ViewSettings(),
    ) -> None:
        super().__init__()
        self.paths, self.specs, self.seed, self.start, self.settings = list(paths), specs, seed, start, settings
        self._cache: dict[int, Image.Image] = {}

    def _source(self, i: int) -> Image.Image:
        if i not in self._cache:
            self._cache[i] = load_source(self.paths[i])
        return self._cache[i]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, float]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info else 0
        rng = np.random.default_rng([self.seed, self.start, worker])
        names, probs = zip(*KINDS, strict=True)
        while True:
            yield self.draw(rng, str(rng.choice(names, p=np.asarray(probs) / sum(probs))))

    def draw(self, rng: np.random.Generator, kind: str) -> tuple[torch.Tensor, torch.Tensor, int, float]:
        s = self.settings
        img = random_crop(self._source(int(rng.integers(len(self.paths)))), rng, s)
        if rng.random() < s.mixup_p:
            img = mixup(img, random_crop(self._source(int(rng.integers(len(self.paths)))), rng, s), rng)
        file, value = distort(img, kind, rng)
        student, teacher = as_inputs(file, self.specs)
        return torch.from_numpy(student), torch.from_numpy(teacher), KIND_INDEX[kind], value
