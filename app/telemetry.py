"""Prometheus metrics, defined once. Queue time is measured apart from compute time."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from app.batcher import BatchObserver

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128, 256)

REQUESTS = Counter("utility_requests", "HTTP requests by route template and status code", ["route", "status"])
REQUEST_DURATION = Histogram(
    "utility_request_duration_seconds", "Whole request time, by route template", ["route"], buckets=_LATENCY_BUCKETS
)
DECODE_DURATION = Histogram(
    "utility_decode_duration_seconds", "Decode + preprocess time per image", ["model"], buckets=_LATENCY_BUCKETS
)
QUEUE_WAIT = Histogram(
    "utility_queue_wait_seconds", "Time an input waited in the batch queue", ["model"], buckets=_LATENCY_BUCKETS
)
INFERENCE_DURATION = Histogram(
    "utility_inference_duration_seconds", "Model call time per batch", ["model"], buckets=_LATENCY_BUCKETS
)
BATCH_SIZE = Histogram("utility_batch_size", "Inputs per model call", ["model"], buckets=_BATCH_BUCKETS)
QUEUE_DEPTH = Gauge("utility_queue_depth", "Inputs waiting in the batch queue", ["model"])
PREDICTIONS = Counter("utility_predictions", "Verdicts returned", ["model", "label"])
MODEL_INFO = Gauge("utility_model_info", "Loaded models (value 1)", ["model", "version", "provider"])
MODEL_READY = Gauge("utility_model_ready", "1 when the model is loaded and warmed up", ["model"])
REJECTED = Counter("utility_rejected", "Inputs refused before inference, by reason", ["reason"])
GATE_REQUESTS = Counter("utility_gate_requests", "Gate decisions per target", ["target", "outcome"])


def batch_observer(model: str) -> BatchObserver:
    wait, infer, size, depth = (
        QUEUE_WAIT.labels(model),
        INFERENCE_DURATION.labels(model),
        BATCH_SIZE.labels(model),
        QUEUE_DEPTH.labels(model),
    )

    def on_inference(seconds: float, n: int) -> None:
        infer.observe(seconds)
        size.observe(n)

    return BatchObserver(queue_wait=wait.observe, inference=on_inference, depth=depth.set)
