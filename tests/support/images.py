"""Real image bytes: solid colours with a little texture, encoded for real."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def image_bytes(
    color: tuple[int, int, int] = (220, 30, 30), size: tuple[int, int] = (64, 48), fmt: str = "JPEG", **save
) -> bytes:
    """A solid-colour image with a little texture, encoded for real."""
    rng = np.random.default_rng(sum(color) + size[0])
    arr = np.clip(np.array(color, dtype=np.int16) + rng.integers(-10, 10, (size[1], size[0], 3)), 0, 255).astype(
        np.uint8
    )
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format=fmt, **save)
    return buf.getvalue()


RED = (220, 30, 30)
BLUE = (30, 30, 220)
GREEN = (20, 250, 20)  # poison for make_tiny_model(fail_on_green=True)
SLIGHTLY_BLUE = (110, 100, 136)  # p_useful about 0.4 on make_tiny_model(gain=1.0)
