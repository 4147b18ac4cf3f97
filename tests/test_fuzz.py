"""Fuzzing: schemathesis against the service's own OpenAPI spec, hypothesis against the decoder.

Bounded so the suite stays fast: a few dozen examples per operation, no deadlines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from support import make_settings, make_tiny_model
from support.hostile import CASES

from app.main import create_app
from app.preprocess import ImageDecodeError, ImageTooLargeError, PreprocessSpec, preprocess_bytes

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
ADMIN_TOKEN = "fuzz-token-" + "x" * 16


# The operations, read from the app's own spec (building the app loads nothing: models load in the lifespan).
OPERATIONS = [
    (method.upper(), path)
    for path, item in create_app(make_settings(Path("unused"), admin_token=ADMIN_TOKEN)).openapi()["paths"].items()
    for method in item
]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    models = tmp_path_factory.mktemp("fuzz") / "models"
    make_tiny_model(models, "tiny")
    app = create_app(make_settings(models, admin_token=ADMIN_TOKEN, max_body_bytes=256 * 1024))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    shutdown_lifespans()


@pytest.mark.parametrize(("method", "path"), [pytest.param(m, p, id=f"{m} {p}") for m, p in OPERATIONS])
def test_no_operation_answers_5xx_or_leaks_internals(api_schema, method: str, path: str):
    operation = api_schema[path][method]
    statuses: list[int] = []

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy())
    def check(case) -> None:
        response = case.call()
        statuses.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])
        if response.status_code >= 400:
            assert "traceback" not in response.text.lower() and 'File "' not in response.text

    check()
    assert statuses and max(statuses) < 500


# ---- the decoder: any bytes -> a finite tensor of the right shape, or one of our two errors ----

SPEC = PreprocessSpec(size=32)
SEEDS = [h.body for h in CASES if h.status == 200 and len(h.body) < 50_000]


@st.composite
def mutated_images(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "word", "cut", "insert"]))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "word":
            data[i : i + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"]))
        elif op == "cut":
            del data[i:]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def decodes_or_refuses(data: bytes) -> None:
    try:
        x = preprocess_bytes(data, SPEC, max_pixels=4_000_000)
    except (ImageDecodeError, ImageTooLargeError):
        return
    assert x.shape == (3, 32, 32) and x.dtype == np.float32 and np.isfinite(x).all()


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_images())
def test_mutated_images_decode_or_get_a_client_error(data: bytes):
    decodes_or_refuses(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_decode_or_get_a_client_error(data: bytes):
    decodes_or_refuses(data)


@settings(max_examples=100, deadline=None)
@given(
    prefix=st.sampled_from(
        [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP", b"II*\x00", b"BM"]
    ),
    rest=st.binary(max_size=512),
)
def test_magic_then_garbage_decodes_or_gets_a_client_error(prefix: bytes, rest: bytes):
    decodes_or_refuses(prefix + rest)
