"""Baseline scores of Fig. 1: what a quality or OOD measure says about a distorted image.

Every score is oriented so that *higher means more useful* before AUROC is taken (see
``ORIENTATION``): PSNR, SSIM and the JPEG quality factor as they are; BRISQUE, NIQE and the
energy E(x) = -T * logsumexp(f(x) / T) (Liu et al. 2020) negated. Images are read with
:func:`training.images.load_rgb` (EXIF-upright, as the distortions were made).
"""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from app.jpegquality import image_quality
from training.evaluate import nriqa

log = logging.getLogger(__name__)

# +1: higher is better already; -1: lower is better, negate before AUROC.
ORIENTATION: dict[str, int] = {
    "psnr": 1,
    "ssim": 1,
    "brisque": -1,
    "niqe": -1,
    "energy": -1,
    "jpeg_quality": 1,
    "p_useful": 1,
}


def _same_size(distorted: np.ndarray, reference: np.ndarray) -> np.ndarray:
    if distorted.shape == reference.shape:
        return distorted
    h, w = reference.shape[:2]
    return np.asarray(Image.fromarray(distorted).resize((w, h), Image.Resampling.BICUBIC))


def psnr(reference: np.ndarray, distorted: np.ndarray) -> float:
    """PSNR in dB of uint8 images (data range 255); a distorted image of another size is resized first."""
    d = _same_size(distorted, reference)
    if np.array_equal(reference, d):
        return float("inf")
    return float(peak_signal_noise_ratio(reference, d, data_range=255))


def ssim(reference: np.ndarray, distorted: np.ndarray) -> float:
    """SSIM (Wang et al. 2004, scikit-image: 7x7 window) on the luma of uint8 images."""
    ref = nriqa.luminance(reference)
    dis = nriqa.luminance(_same_size(distorted, reference))
    return float(structural_similarity(ref, dis, data_range=255.0))


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Energy score E(x) = -T * logsumexp(f(x) / T) per row of (N, classes) logits; lower = in-distribution."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    m = z.max(axis=1, keepdims=True)
    return -temperature * (m[:, 0] + np.log(np.exp(z - m).sum(axis=1)))


def jpeg_quality(data: bytes) -> float | None:
    """The IJG quality factor that reproduces a JPEG's luma quantisation table (None if not a JPEG)."""
    with Image.open(io.BytesIO(data)) as img:
        quality = image_quality(img)
    return None if quality is None else float(quality)


def reference_scores(pristine: np.ndarray, distorted: np.ndarray, data: bytes, nr: bool = True) -> dict[str, float]:
    """PSNR, SSIM, JPEG quality and (if ``nr``) BRISQUE and NIQE of one distorted image."""
    out: dict[str, float] = {"psnr": psnr(pristine, distorted), "ssim": ssim(pristine, distorted)}
    q = jpeg_quality(data)
    out["jpeg_quality"] = float("nan") if q is None else q
    if nr:
        for name, fn in (("brisque", nriqa.brisque), ("niqe", nriqa.niqe)):
            try:
                out[name] = fn(distorted)
            except (ValueError, nriqa.MetricUnavailableError) as exc:
                log.debug("%s failed: %s", name, exc)
                out[name] = float("nan")
    return out


def oriented(name: str, values: np.ndarray) -> np.ndarray:
    """Scores turned so that higher = more useful (for AUROC)."""
    return ORIENTATION.get(name, 1) * np.asarray(values, dtype=np.float64)
