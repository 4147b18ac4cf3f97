"""Decode memory (app/decodebudget.py): the cost read from the header, the budget the decode
threads share, and memory given back to the OS after large decodes."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from support.hostile import encode, png

from app.decodebudget import DecodeBudget, DecodeBusyError, decode_cost
from app.preprocess import DecodeTooLargeError, PreprocessSpec, decode_image, preprocess_bytes

SPEC = PreprocessSpec(size=64)
MB = 2**20


def _opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize(
    ("data", "per_pixel"),
    [
        (encode(Image.new("RGB", (400, 300)), "JPEG"), 4),  # Pillow keeps RGB in 4 bytes a pixel
        (encode(Image.new("L", (400, 300)), "PNG"), 1 + 4),  # L, then RGB
        (png(400, 300, 1, 0), 1 + 4),  # 1-bit: a byte per pixel once decoded
        (encode(Image.new("RGBA", (400, 300)), "PNG"), 4 + 4 + 8),  # composited on white
        (png(400, 300, 16, 6), 4 + 4 + 8),  # 16-bit RGBA decodes as 8-bit RGBA
        (png(400, 300, 16, 0), 2 + 4 + 9),  # 16-bit greyscale through float32
        (encode(Image.new("P", (400, 300)), "PNG", transparency=0), 1 + 4 + 12),
    ],
    ids=["rgb-jpeg", "grey", "1-bit", "rgba", "rgba16", "grey16", "palette-alpha"],
)
def test_cost_is_the_decoded_bytes_plus_the_conversion_to_rgb(data: bytes, per_pixel: int) -> None:
    assert decode_cost(_opened(data)) == 400 * 300 * per_pixel


def test_jpeg_draft_scaling_lowers_the_cost_before_anything_is_decoded() -> None:
    img = _opened(encode(Image.new("RGB", (2048, 1536)), "JPEG"))
    full = decode_cost(img)
    img.draft("RGB", (64, 64))
    assert decode_cost(img) == full // 64  # decoded at 1/8 scale


def test_an_image_over_the_decode_limit_is_refused_from_the_header_fast() -> None:
    bomb = png(6000, 6600, 16, 6)  # 300 KB of zeros, 40 MP of 16-bit RGBA: ~630 MB to decode
    assert len(bomb) < 400_000
    start = time.perf_counter()
    with pytest.raises(DecodeTooLargeError, match=r"6000x6600 RGBA image takes about 6\d\d MB"):
        preprocess_bytes(bomb, SPEC, 40_000_000, max_bytes=256 * MB)
    assert time.perf_counter() - start < 0.5  # the header only: a full decode takes ~1.6 s here
    with pytest.raises(DecodeTooLargeError):
        decode_image(bomb, SPEC, 40_000_000, max_bytes=256 * MB)
    photo = encode(Image.new("RGB", (1200, 900)), "JPEG")  # 4.3 MB decoded: well within
    assert preprocess_bytes(photo, SPEC, max_bytes=256 * MB).shape == (3, 64, 64)


def test_decodes_wait_for_room_in_the_budget_and_give_up_after_their_wait() -> None:
    budget = DecodeBudget(100)
    first_in, release_first, second_in = threading.Event(), threading.Event(), threading.Event()

    def hold_first() -> None:
        with budget.hold(80, 5):
            first_in.set()
            release_first.wait(5)

    def hold_second() -> None:
        with budget.hold(50, 5):
            second_in.set()

    t1 = threading.Thread(target=hold_first)
    t1.start()
    assert first_in.wait(5) and budget.used == 80
    t2 = threading.Thread(target=hold_second)
    t2.start()
    assert not second_in.wait(0.2)  # 80 + 50 > 100: it waits
    with pytest.raises(DecodeBusyError), budget.hold(30, 0.05):
        pass
    with budget.hold(20, 0.05):  # what fits goes ahead
        assert budget.used == 100
    release_first.set()
    assert second_in.wait(5)
    t1.join(5)
    t2.join(5)
    assert budget.used == 0
    with budget.hold(500, 0.05):  # larger than the whole budget: runs alone
        assert budget.used == 100


def test_memory_of_large_decodes_on_threads_goes_back_to_the_os() -> None:
    """Four 9 MP RGBA decodes on two threads (~140 MB each at its peak): RSS afterwards within
    100 MB of before. Run in a fresh interpreter, so other tests' memory does not blur it."""
    script = textwrap.dedent(
        """
        import sys, psutil
        from concurrent.futures import ThreadPoolExecutor
        sys.path[:0] = sys.argv[1:]
        from support.hostile import png
        from app.decodebudget import return_memory_to_os
        from app.preprocess import PreprocessSpec, preprocess_bytes
        assert return_memory_to_os()
        data, spec, proc = png(3000, 3000, 8, 6), PreprocessSpec(size=128, native_crop=True), psutil.Process()
        preprocess_bytes(png(64, 64, 8, 6), spec)
        before = proc.memory_info().rss
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: preprocess_bytes(data, spec), range(4)))
        print((proc.memory_info().rss - before) / 2**20)
        """
    )
    support, root = str(Path(__file__).parents[1]), str(Path(__file__).parents[2])
    out = subprocess.run(
        [sys.executable, "-c", script, support, root], capture_output=True, text=True, timeout=120, check=True
    )
    assert float(out.stdout.strip()) < 100, out.stdout
