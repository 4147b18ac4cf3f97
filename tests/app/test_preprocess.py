"""The shared decode + preprocess path on real encoded images."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data as skdata

from app.preprocess import (
    ImageDecodeError,
    ImageTooLargeError,
    PreprocessSpec,
    decode_image,
    preprocess_bytes,
    to_tensor,
)

SPEC = PreprocessSpec(size=64)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_real_photo_gives_normalised_chw_tensor():
    x = preprocess_bytes(encode(Image.fromarray(skdata.astronaut()), "JPEG", quality=90), SPEC)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    assert np.isfinite(x).all() and -3 < x.min() < x.max() < 3


@pytest.mark.parametrize(
    ("mean", "std"),
    [
        ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ((0.0, 0.1, 0.2), (1.0, 2.0, 0.3)),
    ],
)
def test_table_normalisation_is_bit_identical_to_the_per_pixel_formula(mean, std):
    """The lookup table must not move a single value the shipped models were trained on."""
    spec = PreprocessSpec(size=64, mean=mean, std=std)
    img = Image.fromarray(skdata.astronaut()).resize((64, 64))
    pixels = np.asarray(img, dtype=np.float32) * np.float32(1.0 / 255.0)
    reference = (pixels - np.asarray(mean, np.float32)) * (np.float32(1.0) / np.asarray(std, np.float32))
    x = to_tensor(img, spec)
    assert x.dtype == np.float32 and x.flags.c_contiguous
    assert np.array_equal(x, reference.transpose(2, 0, 1))


@pytest.mark.parametrize(
    "mode",
    ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"],
)
def test_any_mode_becomes_rgb(mode):
    base = Image.fromarray(skdata.chelsea()).resize((80, 60))
    img = base.convert(mode) if mode != "I;16" else Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)
    fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
    out = decode_image(encode(img, fmt), SPEC)
    assert out.mode == "RGB" and out.size == (80, 60)
    if mode == "I;16":  # 16-bit scaled down, not clipped to white
        assert 30 < np.asarray(out).mean() < 220


def test_palette_transparency_and_animation_take_first_frame():
    frames = [Image.new("P", (20, 20), i) for i in (10, 200)]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], transparency=0)
    assert decode_image(gif, SPEC).size == (20, 20)
    webp = encode(
        Image.new("RGB", (20, 20), (255, 0, 0)), "WEBP", save_all=True, append_images=[Image.new("RGB", (20, 20))]
    )
    assert decode_image(webp, SPEC).getpixel((5, 5))[0] > 200


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (60, 30), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    assert decode_image(encode(img, "JPEG", exif=exif), SPEC).size == (30, 60)


def test_draft_decoding_is_what_training_sees():
    photo = encode(Image.fromarray(skdata.astronaut()), "JPEG", quality=90)  # 512x512
    draft = decode_image(photo, PreprocessSpec(size=64, jpeg_draft=True))
    full = decode_image(photo, PreprocessSpec(size=64, jpeg_draft=False))
    assert draft.size == (64, 64) and full.size == (512, 512)  # 1/8 scale in the DCT domain
    a = preprocess_bytes(photo, PreprocessSpec(size=64, jpeg_draft=True))
    b = preprocess_bytes(photo, PreprocessSpec(size=64, jpeg_draft=False))
    assert np.abs(a - b).mean() < 0.1  # close, but not the same: training must use the same path


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", ImageDecodeError),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, ImageDecodeError),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", ImageDecodeError),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", ImageDecodeError),
    ],
)
def test_refused_payloads(payload, error):
    with pytest.raises(error):
        preprocess_bytes(payload, SPEC)


def test_truncated_jpeg_is_refused_at_every_cut():
    photo = encode(Image.fromarray(skdata.coffee()), "JPEG", quality=80)
    for cut in (10, 200, len(photo) // 2, len(photo) - 200):
        with pytest.raises(ImageDecodeError):
            preprocess_bytes(photo[:cut], SPEC)


def test_pixel_limit_is_checked_from_the_header():
    bomb = encode(Image.new("1", (6000, 6000)), "PNG")  # ~36 MP, a few kB
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLargeError):
        preprocess_bytes(bomb, SPEC, max_pixels=10_000_000)


def test_spec_round_trips_and_validates():
    spec = PreprocessSpec(size=160, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="stretch")
    assert PreprocessSpec.from_json(spec.to_json()) == spec
    for bad in ({"size": 2}, {"resize": "zoom"}, {"std": (1, 0, 1)}, {"interpolation": "magic"}):
        with pytest.raises(ValueError):
            PreprocessSpec(**bad)


def test_crop_mode_keeps_native_jpeg_pixels_on_the_block_grid():
    """resize='crop': the network sees the decoder's own pixels (no draft, no resampling)."""
    photo = skdata.astronaut()[:301, :451]  # odd sizes: the centre is off the 8x8 grid
    data = encode(Image.fromarray(photo), "JPEG", quality=10)
    spec = PreprocessSpec(size=128, resize="crop", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    x = preprocess_bytes(data, spec)
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
    left, top = (451 - 128) // 2 // 8 * 8, (301 - 128) // 2 // 8 * 8
    assert left % 8 == 0 and top % 8 == 0
    np.testing.assert_allclose(x.transpose(1, 2, 0) * 255, decoded[top : top + 128, left : left + 128], atol=1e-3)
    # smaller than the crop: scaled up to it, like 'shorter'
    small = encode(Image.fromarray(photo[:90, :100]), "PNG")
    assert preprocess_bytes(small, spec).shape == (3, 128, 128)


@settings(max_examples=40, deadline=None)
@given(
    w=st.integers(1, 300),
    h=st.integers(1, 300),
    fmt=st.sampled_from(["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"]),
    seed=st.integers(0, 2**16),
)
def test_any_valid_image_gives_a_finite_tensor_of_the_right_shape(w, h, fmt, seed):
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    x = preprocess_bytes(encode(Image.fromarray(arr), fmt), SPEC)
    assert x.shape == (3, 64, 64) and np.isfinite(x).all()


def test_native_crop_stacks_the_resized_image_and_the_native_block_grid_crop():
    body = encode(Image.fromarray(skdata.astronaut()), "JPEG", quality=30)  # 512 x 512
    spec = PreprocessSpec(size=64, native_crop=True)
    x = preprocess_bytes(body, spec)
    assert x.shape == (6, 64, 64) and spec.channels == 6
    whole = preprocess_bytes(body, PreprocessSpec(size=64, jpeg_draft=False))
    native = preprocess_bytes(body, PreprocessSpec(size=64, resize="crop"))
    np.testing.assert_array_equal(x[:3], whole)  # full decode: no draft when native pixels are needed
    np.testing.assert_array_equal(x[3:], native)
    assert not np.array_equal(x[:3], preprocess_bytes(body, PreprocessSpec(size=64)))  # draft would differ
    assert PreprocessSpec.from_json(spec.to_json()) == spec


def test_native_crop_of_an_image_smaller_than_the_input_scales_it_up():
    body = encode(Image.fromarray(skdata.astronaut()).resize((40, 30)), "PNG")
    x = preprocess_bytes(body, PreprocessSpec(size=64, native_crop=True))
    assert x.shape == (6, 64, 64) and np.isfinite(x).all()


def test_native_crop_cannot_be_combined_with_crop():
    with pytest.raises(ValueError, match="native_crop"):
        PreprocessSpec(size=64, resize="crop", native_crop=True)


def test_specs_without_native_crop_still_load():
    """Models exported before the field existed keep their one-view preprocessing."""
    legacy = '{"interpolation": "bilinear", "jpeg_draft": true, "layout": "NCHW", "mean": [0.5, 0.5, 0.5], '
    legacy += '"resize": "shorter", "size": 128, "std": [0.5, 0.5, 0.5]}'
    spec = PreprocessSpec.from_json(legacy)
    assert spec.channels == 3 and not spec.native_crop and not spec.quality_map


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_quality_map_carries_the_jpeg_headers_quality_as_a_constant_plane(mode):
    photo = Image.fromarray(skdata.astronaut()).convert(mode)
    spec = PreprocessSpec(size=64, native_crop=True, quality_map=True)
    x = preprocess_bytes(encode(photo, "JPEG", quality=37), spec)
    assert x.shape == (7, 64, 64) and spec.channels == 7
    np.testing.assert_array_equal(x[-1], np.float32(np.log(37) / np.log(100)))  # log q / log 100, everywhere
    np.testing.assert_array_equal(x[:6], preprocess_bytes(encode(photo, "JPEG", quality=37), replace_qm(spec)))
    assert PreprocessSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP"])
def test_quality_map_says_unknown_for_files_without_a_jpeg_header(fmt):
    body = encode(Image.fromarray(skdata.astronaut()), fmt)
    x = preprocess_bytes(body, PreprocessSpec(size=64, quality_map=True))
    assert x.shape == (4, 64, 64)
    np.testing.assert_array_equal(x[-1], -1.0)


def test_quality_plane_values_are_monotone_in_quality():
    values = [
        preprocess_bytes(
            encode(Image.fromarray(skdata.astronaut()), "JPEG", quality=q), PreprocessSpec(size=32, quality_map=True)
        )[-1, 0, 0]
        for q in (2, 10, 50, 95, 100)
    ]
    assert values == sorted(values) and values[0] > 0 and values[-1] == 1.0


def replace_qm(spec: PreprocessSpec) -> PreprocessSpec:
    return dataclasses.replace(spec, quality_map=False)
