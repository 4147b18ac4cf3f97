"""Image decoding and preprocessing: the one path shared by serving, scoring and training.

Training imports :func:`preprocess_bytes` and the ONNX export writes the :class:`PreprocessSpec`
into the model's metadata, so the service always prepares pixels exactly as training did.
"""

from __future__ import annotations

import functools
import io
import json
import warnings
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from PIL import Image, ImageFile, ImageOps

from app.decodebudget import DecodeBudget, decode_cost
from app.jpegquality import JPEG_FORMATS, image_quality

# Formats we accept (JPEG includes multi-picture MPO files). Everything else (EPS, PSD, ICO,
# SVG...) is refused before any parser runs; EPS in particular would shell out to Ghostscript.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
CONTENT_TYPES = {
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/pjpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/x-ms-bmp": "BMP",
    "image/tiff": "TIFF",
    "image/gif": "GIF",
}
_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
# Our own max_pixels check runs first; Pillow's bomb guard stays as a second line of defence.
ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.init()  # register every plugin now, so the formats= filter below can name them


# decode_image records the JPEG header's quality factor (None for other formats) under this key of
# ``Image.info``; the quality plane stores it as 1..100, and UNKNOWN_QUALITY where there is none.
QUALITY_KEY = "utility.jpeg_quality"
UNKNOWN_QUALITY = 0


class ImageDecodeError(ValueError):
    """The bytes are not a readable image."""


class ImageTooLargeError(ValueError):
    """The image declares more pixels than allowed."""


class DecodeTooLargeError(ImageTooLargeError):
    """Decoding the image would take more memory than one decode may (``max_bytes``)."""


RESIZE_MODES = ("shorter", "stretch", "crop")


@dataclass(frozen=True)
class PreprocessSpec:
    """How raw pixels become the network input. Serialised into the ONNX metadata.

    ``resize="shorter"`` scales the shorter side to ``size`` and centre-crops a square;
    ``resize="stretch"`` scales the whole image to ``size`` x ``size``.
    ``resize="crop"`` centre-crops ``size`` x ``size`` at native resolution, aligned on the 8x8
    JPEG block grid (no scaling, no JPEG draft), so compression artefacts reach the network as the
    encoder left them; an image whose shorter side is below ``size`` is scaled up to it first.
    ``jpeg_draft`` lets libjpeg decode JPEGs at 1/2, 1/4 or 1/8 scale (DCT-domain) when the
    result still covers ``size``; it changes pixels slightly, which is why training uses it too.
    ``native_crop`` adds a second view as channels 3-5: the ``resize="crop"`` view (native pixels
    on the block grid), so the network sees the content (the first view) and the compression
    artefacts as the encoder left them; the image is then decoded at full size (no draft).
    ``quality_map`` adds one last channel, constant over the image: the JPEG quality factor read
    from the file's quantisation table (:mod:`app.jpegquality`), or "unknown" for other formats. An
    input plane carrying a known degradation level, as FFDNet's noise-level map does: the network
    need not guess from pixels how hard the file was compressed when the file says so.
    """

    size: int = 224
    resize: str = "shorter"
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    jpeg_draft: bool = True
    layout: str = field(default="NCHW")
    native_crop: bool = False
    quality_map: bool = False

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        if self.interpolation not in _INTERPOLATION:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION)}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 values, std > 0")
        if self.layout != "NCHW":
            raise ValueError("only NCHW layout is supported")
        if self.native_crop and self.resize == "crop":
            raise ValueError("native_crop adds a resize='crop' view to another resize mode; it cannot be both")

    @property
    def channels(self) -> int:
        """3 per view (6 with the native crop), plus 1 for the quality plane."""
        return self.views * 3 + int(self.quality_map)

    @property
    def views(self) -> int:
        return 2 if self.native_crop else 1

    @property
    def draft(self) -> bool:
        """Whether libjpeg may decode at a reduced scale (never when native pixels are needed)."""
        return self.jpeg_draft and self.resize != "crop" and not self.native_crop

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        data = json.loads(text)
        data["mean"] = tuple(data["mean"])
        data["std"] = tuple(data["std"])
        return cls(**data)


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open the header only and check the declared size; no pixel data is decoded yet."""
    if not data:
        raise ImageDecodeError("empty body: no image data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError("image has too many pixels") from exc
    except Image.DecompressionBombWarning as exc:
        raise ImageTooLargeError("image has too many pixels") from exc
    except Exception as exc:  # UnidentifiedImageError, OSError, SyntaxError, struct.error...: hostile bytes
        raise ImageDecodeError("not a supported image (JPEG, PNG, WebP, BMP, TIFF, GIF)") from exc
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageDecodeError("image has an empty dimension")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}")
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Scale high bit-depth greyscale to 8 bits instead of letting convert() clip it.
        arr = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=65535.0, neginf=0.0)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _open_for_decode(
    data: bytes, spec: PreprocessSpec, max_pixels: int, max_bytes: int | None
) -> tuple[Image.Image, int | None, int]:
    """Header only: the opened image (JPEG draft applied), its JPEG quality and its decode cost."""
    img = open_image(data, max_pixels)
    try:
        # from the header, before any conversion drops the tables; only models that read it pay for it
        quality = image_quality(img) if spec.quality_map else None
        if spec.draft and img.format in JPEG_FORMATS:
            img.draft("RGB", (spec.size, spec.size))
        cost = decode_cost(img)
    except Exception as exc:  # a header Pillow opened but cannot describe
        raise ImageDecodeError("image header is corrupt") from exc
    if max_bytes is not None and cost > max_bytes:
        raise DecodeTooLargeError(
            f"decoding this {img.width}x{img.height} {img.mode} image takes about {cost / 2**20:.0f} MB, "
            f"over the limit of {max_bytes / 2**20:.0f} MB"
        )
    return img, quality, cost


def _finish_decode(img: Image.Image, quality: int | None) -> Image.Image:
    try:
        img.seek(0)
        img.load()
        ImageOps.exif_transpose(img, in_place=True)  # in place: no copy when there is nothing to turn
        rgb = _to_rgb(img)
        rgb.info[QUALITY_KEY] = quality
        return rgb
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError("image has too many pixels") from exc
    except Exception as exc:  # Pillow's decoders raise OSError, ValueError, TypeError... on hostile bytes
        raise ImageDecodeError("image data is truncated or corrupt") from exc


def decode_image(
    data: bytes, spec: PreprocessSpec, max_pixels: int = 64_000_000, *, max_bytes: int | None = None
) -> Image.Image:
    """Decode to an upright RGB image: first frame, EXIF orientation, any mode to RGB.

    ``max_bytes`` refuses, from the header, an image whose decode would take more memory
    (:func:`app.decodebudget.decode_cost`)."""
    img, quality, _ = _open_for_decode(data, spec, max_pixels, max_bytes)
    return _finish_decode(img, quality)


def _crop_box(width: int, height: int, spec: PreprocessSpec) -> tuple[float, float, float, float]:
    if spec.resize == "stretch":
        return (0.0, 0.0, float(width), float(height))
    side = min(width, height)
    if spec.resize == "crop" and side >= spec.size:
        # on JPEG's 8x8 block grid, so block edges sit at the same place in every crop
        left, top = (width - spec.size) // 2 // 8 * 8, (height - spec.size) // 2 // 8 * 8
        return (float(left), float(top), float(left + spec.size), float(top + spec.size))
    left = (width - side) / 2.0
    top = (height - side) / 2.0
    return (left, top, left + side, top + side)


def _view(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """One (S, S, 3) uint8 view: resized (+ centre crop), or native pixels for resize='crop'."""
    box = _crop_box(img.width, img.height, spec)
    if spec.resize == "crop" and box[2] - box[0] == spec.size and box[3] - box[1] == spec.size:
        return np.asarray(img.crop(tuple(int(v) for v in box)))  # native pixels, no resampling
    return np.asarray(img.resize((spec.size, spec.size), _INTERPOLATION[spec.interpolation], box=box))


def to_pixels(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """The network's input before normalisation: (channels, S, S) uint8.

    The quality plane holds the JPEG quality 1..100, or 0 where the file says none
    (:data:`UNKNOWN_QUALITY`; an image that did not come through :func:`decode_image` too).
    """
    planes = [_view(img, spec).transpose(2, 0, 1)]  # a view of the pixels, no copy
    if spec.native_crop:
        planes.append(_view(img, replace(spec, resize="crop", native_crop=False)).transpose(2, 0, 1))
    if spec.quality_map:
        quality = img.info.get(QUALITY_KEY) or UNKNOWN_QUALITY
        planes.append(np.full((1, spec.size, spec.size), quality, dtype=np.uint8))
    return planes[0] if len(planes) == 1 else np.concatenate(planes)


def to_tensor(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Resize (+ centre crop) and normalise an RGB image into a float32 CHW array."""
    pixels = to_pixels(img, spec)
    lut = normalise_table(spec.mean, spec.std)
    out = np.empty(pixels.shape, dtype=np.float32)
    for c in range(spec.views * 3):
        np.take(lut[c % 3], pixels[c], out=out[c])
    if spec.quality_map:
        np.take(quality_table(), pixels[-1], out=out[-1])
    return out


@functools.cache
def quality_table() -> np.ndarray:
    """(256,) float32: the quality plane's value per stored level: log(q) / log(100) for q in
    1..100 (0 at quality 1, 1 at 100: compression acts on a log scale), -1 where unknown (0)."""
    levels = np.arange(256, dtype=np.float64)
    table = np.log(np.clip(levels, 1, 100)) / np.log(100.0)
    table[UNKNOWN_QUALITY] = -1.0
    return table.astype(np.float32)


@functools.lru_cache(maxsize=16)
def normalise_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: the normalised value of every 8-bit level, per channel.

    The same float32 operations as normalising each pixel ((x / 255 - mean) / std, as x * (1/255)
    then * (1/std)), done once per level, so a lookup gives bit-identical values at a third of the cost.
    """
    levels = np.arange(256, dtype=np.float32)[:, None] * np.float32(1.0 / 255.0)
    inv_std = np.float32(1.0) / np.asarray(std, dtype=np.float32)
    table = (levels - np.asarray(mean, dtype=np.float32)) * inv_std
    return np.ascontiguousarray(table.T)


def preprocess_bytes(
    data: bytes,
    spec: PreprocessSpec,
    max_pixels: int = 64_000_000,
    *,
    max_bytes: int | None = None,
    budget: DecodeBudget | None = None,
    wait_s: float = 10.0,
) -> np.ndarray:
    """Encoded image bytes -> network input (channels, size, size) float32. Used by training too.

    With a ``budget``, the decode holds its memory cost in it from the first decoded byte until
    the full-size image is freed, waiting up to ``wait_s`` for room (:class:`DecodeBudget`)."""
    img, quality, cost = _open_for_decode(data, spec, max_pixels, max_bytes)
    if budget is None:
        return _tensor(img, quality, spec)
    with budget.hold(cost, wait_s):
        return _tensor(img, quality, spec)


def _tensor(img: Image.Image, quality: int | None, spec: PreprocessSpec) -> np.ndarray:
    return to_tensor(_finish_decode(img, quality), spec)  # the full-size images die with this frame
