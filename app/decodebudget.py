"""Memory for decoding: what one decode will take, a budget the decode threads share, and the
allocator setting that gives a large decode's memory back to the OS.

A pixel count is not a memory budget: 40 MP of RGBA costs five times what 40 MP of greyscale does
once it is converted. :func:`decode_cost` estimates the peak bytes of a decode from the header
alone (after JPEG draft scaling), so an image that would go over ``UTILITY_MAX_DECODE_MB`` is a
quick 413 (``app.preprocess.DecodeTooLargeError``), and :class:`DecodeBudget` makes concurrent
large decodes wait for each other instead of stacking up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

log = logging.getLogger(__name__)

# Bytes per pixel as Pillow stores each mode ("RGB" takes 4, "1" one byte per pixel).
_STORED = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# Extra bytes per pixel of the conversion to RGB (app.preprocess._to_rgb), beyond the RGB result:
# alpha is composited on white through two RGBA images; 16-bit and float greyscale pass through
# a float32 array, an 8-bit array and an "L" image.
_CONVERSION = {"RGBA": 8, "LA": 12, "PA": 12, "La": 12, "RGBa": 8, "I": 9, "F": 9}
_HIGH_DEPTH = 9  # the I;16 family, as "I" and "F"
EXIF_ORIENTATION = 0x0112


class DecodeBusyError(RuntimeError):
    """The decode memory budget stayed full for as long as the request could wait."""


def decode_cost(img: Image.Image) -> int:
    """Peak bytes of decoding ``img`` (opened, draft already applied) and making it upright RGB."""
    pixels = img.width * img.height
    stored = _STORED.get(img.mode, 4)
    per_pixel = stored
    if img.mode != "RGB":
        per_pixel += 4 + _CONVERSION.get(img.mode, _HIGH_DEPTH if img.mode.startswith("I;16") else 0)
        if img.mode == "P" and "transparency" in img.info:
            per_pixel += _CONVERSION["PA"]
    orientation = img.getexif().get(EXIF_ORIENTATION, 1) if img.format in ("JPEG", "MPO", "TIFF", "WEBP") else 1
    if orientation not in (None, 1):
        per_pixel += 4  # exif_transpose makes a turned copy
    return pixels * per_pixel


class DecodeBudget:
    """Bytes of decoding in flight, shared by the decode threads: a decode holds its cost while it runs."""

    def __init__(self, total_bytes: int) -> None:
        if total_bytes < 1:
            raise ValueError("the decode budget must be at least one byte")
        self.total = total_bytes
        self._used = 0
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    @contextmanager
    def hold(self, nbytes: int, timeout: float) -> Iterator[None]:
        """Wait (up to ``timeout`` s) until ``nbytes`` fit, keep them while the block runs.

        A decode larger than the whole budget runs alone, once nothing else holds any."""
        need = min(nbytes, self.total)
        with self._cond:
            if not self._cond.wait_for(lambda: self._used + need <= self.total, timeout):
                raise DecodeBusyError(f"decode memory stayed in use for {timeout:g} s; retry")
            self._used += need
        try:
            yield
        finally:
            with self._cond:
                self._used -= need
                self._cond.notify_all()


def return_memory_to_os(mmap_threshold: int = 1 << 20) -> bool:
    """Have glibc serve allocations above ``mmap_threshold`` with mmap, so they go back to the OS
    when freed. Without it, glibc raises its threshold after the first large free and keeps later
    decode buffers in per-thread arenas: RSS stayed at ~1.5 GB after four 40 MP RGBA decodes on two
    threads, against 44 MB with it (docs/reliability.md). False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.info("no glibc mallopt here; decode memory is left to the allocator")
        return False
    m_mmap_threshold = -3
    return bool(mallopt(ctypes.c_int(m_mmap_threshold), ctypes.c_int(mmap_threshold)))
