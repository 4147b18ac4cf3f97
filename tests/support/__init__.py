"""Test helpers: real tiny ONNX models, real image bytes, the service in-process, hostile inputs, label manifests."""

from support.images import BLUE, GREEN, RED, SLIGHTLY_BLUE, image_bytes
from support.models import TINY_SIZE, make_tiny_model
from support.service import METRIC_CONTRACT, make_settings, metric_value, serve

__all__ = [
    "BLUE",
    "GREEN",
    "METRIC_CONTRACT",
    "RED",
    "SLIGHTLY_BLUE",
    "TINY_SIZE",
    "image_bytes",
    "make_settings",
    "make_tiny_model",
    "metric_value",
    "serve",
]
