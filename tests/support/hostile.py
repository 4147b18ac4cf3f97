"""The hostile-input corpus, made by code (nothing downloaded): what a camera or an attacker may send.

Each :class:`Hostile` is one image payload and the answer the service documents for it: 200 for
a real image however odd (1x100000, CMYK, 16-bit, animated, polyglot...), 400 for bytes that are
no supported image, 413 for an image whose header declares more than ``max_pixels``. The same
payload gets the same status as a raw body, as the multipart ``file`` part and as one item of
``/utility/batch``. Request-level hostility (content types, multipart abuse, parameters, slow
bodies) is built in tests/test_hostile.py, where the request is.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

RED = (220, 30, 30)


@dataclass(frozen=True)
class Hostile:
    id: str
    content_type: str  # sent with the raw body; multipart parts carry it too
    status: int  # documented answer: 200, 400 (not an image / corrupt) or 413 (too many pixels)
    what: str  # one line for the closing table
    build: object  # () -> bytes, so that collection stays cheap

    @property
    def body(self) -> bytes:
        return _cached(self.build)


@functools.cache
def _cached(build) -> bytes:
    return build()


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = RED, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(size[0] * 7 + size[1])
    arr = np.clip(np.array(color, np.int16) + rng.integers(-12, 12, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    return img if mode == "RGB" else img.convert(mode)


def jpeg(size: tuple[int, int] = (64, 48), **kw) -> bytes:
    return encode(photo(size), "JPEG", quality=85, **kw)


# ---- hand-made containers (so headers can lie) ----


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes | None = None, extra=()) -> bytes:
    """A PNG written by hand; ``rows=None`` means all-zero pixels, compressed as a stream (bomb-friendly)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    row_len = 1 + (width * channels * bit_depth + 7) // 8
    comp = zlib.compressobj(9)
    if rows is None:
        zero_rows = b"\x00" * (row_len * min(height, 256))
        idat = b"".join(comp.compress(zero_rows) for _ in range(height // 256))
        idat += comp.compress(b"\x00" * row_len * (height % 256))
    else:
        idat = comp.compress(rows)
    idat += comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + b"".join(extra)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png16(channels: int, size: tuple[int, int] = (40, 30)) -> bytes:
    w, h = size
    rng = np.random.default_rng(channels)
    arr = rng.integers(0, 65536, (h, w * channels), dtype=np.uint16).astype(">u2")
    rows = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))
    return png(w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[channels], rows)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF header says ``width`` x ``height``."""
    data = bytearray(jpeg((16, 16)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def jpeg_with_segment(marker: int, payload: bytes) -> bytes:
    """Insert an APPn/COM segment (as many 64 KB segments as needed) after SOI."""
    base = jpeg()
    segments = b""
    for i in range(0, max(len(payload), 1), 65533):
        part = payload[i : i + 65533]
        segments += struct.pack(">BBH", 0xFF, marker, len(part) + 2) + part
    return base[:2] + segments + base[2:]


def tiff(width: int, height: int, strip_offset_type: int = 4, samples: int = 1) -> bytes:
    """A baseline greyscale TIFF written by hand: its IFD may lie about the size, the offset type or
    the samples per pixel (over Pillow's maximum, its TIFF plugin logs an ERROR line)."""
    strip = b"\x00" * 16
    offset = struct.pack("<f", 8.0) if strip_offset_type == 11 else struct.pack("<I", 8)
    entries = [
        struct.pack("<HHII", 256, 4, 1, width),
        struct.pack("<HHII", 257, 4, 1, height),
        struct.pack("<HHIHH", 258, 3, 1, 8, 0),
        struct.pack("<HHIHH", 259, 3, 1, 1, 0),
        struct.pack("<HHIHH", 262, 3, 1, 1, 0),
        struct.pack("<HHI", 273, strip_offset_type, 1) + offset,
        struct.pack("<HHIHH", 277, 3, 1, samples, 0),
        struct.pack("<HHII", 278, 4, 1, height),
        struct.pack("<HHII", 279, 4, 1, len(strip)),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + b"\x00\x00\x00\x00"
    return b"II*\x00" + struct.pack("<I", 8 + len(strip)) + strip + ifd


def bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(photo((8, 8)), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(photo((8, 8), mode="P"), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    """An animated (VP8X) WebP whose canvas says ``width`` x ``height``."""
    frames = [photo((16, 16)), photo((16, 16), (30, 30, 220))]
    data = bytearray(encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True))
    vp8x = data.index(b"VP8X")
    data[vp8x + 12 : vp8x + 18] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return bytes(data)


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return encode(photo((60, 40)), "JPEG", exif=exif)


def exif_blob(tiff_body: bytes) -> bytes:
    return jpeg_with_segment(0xE1, b"Exif\x00\x00" + tiff_body)


def animated(fmt: str, frames: int, size=(32, 24), **kw) -> bytes:
    imgs = [photo(size, ((i * 37) % 256, 30, 30)) for i in range(frames)]
    if fmt == "GIF":
        imgs = [im.convert("P") for im in imgs]
    return encode(imgs[0], fmt, save_all=True, append_images=imgs[1:], **kw)


def polyglot_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("payload.sh", "#!/bin/sh\necho pwned\n")
    return jpeg() + buf.getvalue()


def truncated_jpeg(where: str) -> bytes:
    data = encode(photo((400, 300)), "JPEG", quality=90)
    sos = data.index(b"\xff\xda")
    cut = {"soi": 2, "headers": sos // 2, "after-sos": sos + 14, "half": len(data) // 2, "no-eoi": len(data) - 2}
    return data[: cut[where]]


def random_bytes(n: int = 4096, prefix: bytes = b"") -> bytes:
    return prefix + np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()


def _tiff_mode(mode: str) -> bytes:
    img = photo((40, 30), mode=mode) if mode in ("CMYK", "L", "1", "P", "LA", "RGBA", "YCbCr") else None
    if mode == "F":
        arr = np.random.default_rng(1).standard_normal((30, 40)).astype(np.float32)
        arr[0, :5] = [np.nan, np.inf, -np.inf, 1e38, -1e38]
        img = Image.fromarray(arr, "F")
    if mode == "I":
        img = Image.fromarray(np.arange(1200, dtype=np.int32).reshape(30, 40) * 1_000_000 - 600_000_000, "I")
    return encode(img, "TIFF")


SVG = b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'><script>alert(1)</script></svg>"
HTML = b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>"
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(%pipe%id) (r) file\n"


CASES: list[Hostile] = [
    # --- not an image at all: 400 ---
    Hostile("empty", "image/jpeg", 400, "empty body", lambda: b""),
    Hostile("random-bytes", "image/jpeg", 400, "4 KB of random bytes", random_bytes),
    Hostile(
        "random-after-jpeg-magic", "image/jpeg", 400, "FF D8 FF + random", lambda: random_bytes(prefix=b"\xff\xd8\xff")
    ),
    Hostile(
        "random-after-png-magic",
        "image/png",
        400,
        "PNG signature + random",
        lambda: random_bytes(prefix=b"\x89PNG\r\n\x1a\n"),
    ),
    Hostile("svg-as-png", "image/png", 400, "SVG with a script, sent as image/png", lambda: SVG),
    Hostile("html-as-jpeg", "image/jpeg", 400, "HTML sent as image/jpeg", lambda: HTML),
    Hostile("eps-as-jpeg", "image/jpeg", 400, "EPS (would run Ghostscript) as image/jpeg", lambda: EPS),
    Hostile("ico-as-png", "image/png", 400, "ICO (format not allowed)", lambda: encode(photo((16, 16)), "ICO")),
    Hostile("psd-magic", "image/png", 400, "PSD signature", lambda: b"8BPS\x00\x01" + b"\x00" * 64),
    Hostile("zip-as-jpeg", "image/jpeg", 400, "a zip file", lambda: polyglot_zip()[len(jpeg()) :]),
    # --- truncated or corrupt: 400 ---
    *[
        Hostile(
            f"truncated-jpeg-{w}", "image/jpeg", 400, f"400x300 JPEG cut at {w}", functools.partial(truncated_jpeg, w)
        )
        for w in ("soi", "headers", "after-sos", "half")
    ],
    Hostile(
        "truncated-png",
        "image/png",
        400,
        "PNG cut in half",
        lambda: (d := encode(photo((200, 150)), "PNG"))[: len(d) // 2],
    ),
    Hostile(
        "truncated-webp",
        "image/webp",
        400,
        "WebP cut in half",
        lambda: (d := encode(photo((200, 150)), "WEBP"))[: len(d) // 2],
    ),
    Hostile(
        "truncated-gif",
        "image/gif",
        400,
        "GIF cut in half",
        lambda: (d := encode(photo((200, 150), mode="P"), "GIF"))[: len(d) // 2],
    ),
    Hostile(
        "tiff-float-offset",
        "image/tiff",
        400,
        "TIFF strip offset stored as a float (was a 500)",
        lambda: tiff(4, 4, 11),
    ),
    Hostile(
        "jpeg-no-eoi",
        "image/jpeg",
        400,
        "JPEG missing only its EOI marker",
        functools.partial(truncated_jpeg, "no-eoi"),
    ),
    Hostile(
        "png-bad-crc",
        "image/png",
        400,
        "PNG with a wrong IHDR CRC",
        lambda: (d := bytearray(encode(photo(), "PNG")), d.__setitem__(29, d[29] ^ 0xFF), bytes(d))[2],
    ),
    Hostile("png-zero-width", "image/png", 400, "PNG declaring 0x10", lambda: png(0, 10, 8, 0)),
    Hostile(
        "png-huge-ztxt",
        "image/png",
        400,
        "zTXt chunk inflating to 20 MB (text bomb)",
        lambda: png(8, 8, 8, 0, extra=[png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"\x00" * 20_000_000, 9))]),
    ),
    # --- headers declaring too many pixels: 413 before any decoding ---
    Hostile(
        "jpeg-60000x60000", "image/jpeg", 413, "JPEG header declares 60000x60000", lambda: jpeg_declaring(60000, 60000)
    ),
    Hostile(
        "jpeg-65535x700",
        "image/jpeg",
        413,
        "JPEG header declares 65535x700 (46 MP, under Pillow's own guard)",
        lambda: jpeg_declaring(65535, 700),
    ),
    Hostile(
        "png-bomb-100mp", "image/png", 413, "PNG bomb: 10000x10000 bilevel, ~15 KB", lambda: png(10000, 10000, 1, 0)
    ),
    Hostile(
        "png-bomb-2gp", "image/png", 413, "PNG bomb: 50000x50000 declared", lambda: png(50000, 50000, 1, 0, rows=b"")
    ),
    Hostile("gif-65535x65535", "image/gif", 413, "GIF screen 65535x65535", lambda: gif_declaring(65535, 65535)),
    Hostile("bmp-50000x50000", "image/bmp", 413, "BMP header 50000x50000", lambda: bmp_declaring(50000, 50000)),
    Hostile("tiff-100000x100000", "image/tiff", 413, "TIFF IFD 100000x100000", lambda: tiff(100000, 100000)),
    Hostile(
        "webp-canvas-16383", "image/webp", 413, "animated WebP canvas 16383x16383", lambda: webp_declaring(16383, 16383)
    ),
    # --- real images, however odd: 200 ---
    Hostile("jpeg-1x1", "image/jpeg", 200, "1x1 JPEG", lambda: jpeg((1, 1))),
    Hostile("png-1x1", "image/png", 200, "1x1 PNG", lambda: encode(photo((1, 1)), "PNG")),
    Hostile("png-1x100000", "image/png", 200, "1x100000 PNG", lambda: encode(photo((1, 100000)), "PNG")),
    Hostile("png-100000x1", "image/png", 200, "100000x1 PNG", lambda: encode(photo((100000, 1)), "PNG")),
    Hostile("jpeg-cmyk", "image/jpeg", 200, "CMYK JPEG (Adobe)", lambda: encode(photo(mode="CMYK"), "JPEG")),
    Hostile("jpeg-grey", "image/jpeg", 200, "greyscale JPEG", lambda: encode(photo(mode="L"), "JPEG")),
    Hostile("jpeg-progressive", "image/jpeg", 200, "progressive JPEG", lambda: jpeg((300, 200), progressive=True)),
    Hostile("png-grey", "image/png", 200, "greyscale PNG", lambda: encode(photo(mode="L"), "PNG")),
    Hostile("png-bilevel", "image/png", 200, "1-bit PNG", lambda: encode(photo(mode="1"), "PNG")),
    Hostile("png-grey-alpha", "image/png", 200, "greyscale+alpha PNG", lambda: encode(photo(mode="LA"), "PNG")),
    Hostile("png-16bit-grey", "image/png", 200, "16-bit greyscale PNG", lambda: png16(1)),
    Hostile("png-16bit-grey-alpha", "image/png", 200, "16-bit greyscale+alpha PNG", lambda: png16(2)),
    Hostile("png-16bit-rgb", "image/png", 200, "16-bit RGB PNG", lambda: png16(3)),
    Hostile("png-16bit-rgba", "image/png", 200, "16-bit RGBA PNG", lambda: png16(4)),
    Hostile(
        "png-palette-trns",
        "image/png",
        200,
        "palette PNG with tRNS transparency",
        lambda: encode(photo(mode="P"), "PNG", transparency=0),
    ),
    Hostile(
        "png-rgba",
        "image/png",
        200,
        "RGBA PNG, fully transparent",
        lambda: encode(Image.new("RGBA", (30, 30), (0, 0, 0, 0)), "PNG"),
    ),
    Hostile("apng", "image/png", 200, "animated PNG, 5 frames", lambda: animated("PNG", 5)),
    Hostile("gif-animated", "image/gif", 200, "animated GIF, 3 frames", lambda: animated("GIF", 3)),
    Hostile("gif-2000-frames", "image/gif", 200, "GIF with 2000 frames", lambda: animated("GIF", 2000, size=(8, 8))),
    Hostile("webp-animated", "image/webp", 200, "animated WebP, 3 frames", lambda: animated("WEBP", 3)),
    Hostile(
        "webp-lossless-alpha",
        "image/webp",
        200,
        "lossless WebP with alpha",
        lambda: encode(photo(mode="RGBA"), "WEBP", lossless=True),
    ),
    Hostile("tiff-100-pages", "image/tiff", 200, "TIFF with 100 pages", lambda: animated("TIFF", 100, size=(16, 16))),
    Hostile("tiff-cmyk", "image/tiff", 200, "CMYK TIFF", lambda: _tiff_mode("CMYK")),
    Hostile("tiff-float-nan", "image/tiff", 200, "32-bit float TIFF with NaN/inf", lambda: _tiff_mode("F")),
    Hostile("tiff-int32", "image/tiff", 200, "32-bit signed integer TIFF", lambda: _tiff_mode("I")),
    Hostile(
        "tiff-tiny", "image/tiff", 200, "hand-written 4x4 TIFF (the control for the float offset)", lambda: tiff(4, 4)
    ),
    Hostile("bmp", "image/bmp", 200, "BMP", lambda: encode(photo(), "BMP")),
    Hostile(
        "mpo",
        "image/jpeg",
        200,
        "MPO (two JPEGs, multi-picture)",
        lambda: encode(photo(), "MPO", save_all=True, append_images=[photo((64, 48), (30, 30, 220))]),
    ),
    *[
        Hostile(
            f"exif-orientation-{v}", "image/jpeg", 200, f"EXIF orientation {v}", functools.partial(exif_orientation, v)
        )
        for v in (3, 6, 8, 0, 9, 65535)
    ],
    Hostile(
        "exif-garbage", "image/jpeg", 200, "APP1 Exif header followed by garbage", lambda: exif_blob(random_bytes(2000))
    ),
    Hostile(
        "exif-ifd-loop",
        "image/jpeg",
        200,
        "EXIF IFD pointing at itself",
        lambda: exif_blob(b"II*\x00\x08\x00\x00\x00" + struct.pack("<HHHII", 1, 0x8769, 4, 1, 8) + b"\x08\x00\x00\x00"),
    ),
    Hostile(
        "exif-huge-count",
        "image/jpeg",
        200,
        "EXIF entry claiming 2^32-1 values",
        lambda: exif_blob(
            b"II*\x00\x08\x00\x00\x00" + struct.pack("<HHHII", 1, 0x0112, 3, 0xFFFFFFFF, 0) + b"\x00" * 8
        ),
    ),
    Hostile(
        "exif-orientation-ascii",
        "image/jpeg",
        200,
        "EXIF orientation stored as text",
        lambda: exif_blob(
            b"II*\x00\x08\x00\x00\x00" + struct.pack("<HHHI4s", 1, 0x0112, 2, 4, b"six\x00") + b"\x00" * 4
        ),
    ),
    Hostile(
        "exif-60kb",
        "image/jpeg",
        200,
        "60 KB EXIF description",
        lambda: encode(photo(), "JPEG", exif=(lambda e: (e.__setitem__(0x010E, "A" * 60000), e)[1])(Image.Exif())),
    ),
    Hostile(
        "icc-2mb",
        "image/jpeg",
        200,
        "2 MB ICC profile over 32 APP2 segments",
        lambda: encode(photo(), "JPEG", icc_profile=random_bytes(2_000_000)),
    ),
    Hostile("com-1mb", "image/jpeg", 200, "1 MB of COM segments", lambda: jpeg_with_segment(0xFE, b"A" * 1_000_000)),
    Hostile("polyglot-jpeg-zip", "image/jpeg", 200, "valid JPEG with a zip appended", polyglot_zip),
    Hostile(
        "png-as-jpeg", "image/jpeg", 200, "a PNG sent as image/jpeg (content sniffed)", lambda: encode(photo(), "PNG")
    ),
]
