"""Image bytes -> utility verdict: decode off the event loop, then batch. Shared by HTTP, gate and score."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from app import metrics
from app.batcher import BatcherClosedError, QueueFullError
from app.engine import Prediction
from app.osthreads import name_os_thread
from app.preprocess import preprocess_bytes
from app.registry import ModelRegistry, ServedModel


@dataclass(frozen=True)
class Verdict:
    useful: bool
    label: str
    confidence: float
    p_useful: float
    threshold: float
    model_name: str
    model_version: str
    model_task: str

    def as_dict(self) -> dict:
        return {
            "useful": self.useful,
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "p_useful": round(self.p_useful, 6),
            "threshold": self.threshold,
            "model": {"name": self.model_name, "version": self.model_version, "task": self.model_task},
        }


class Assessor:
    """Runs the request path's stages: decode/validate -> queue -> batch -> predict -> verdict."""

    def __init__(self, registry: ModelRegistry, decode_threads: int) -> None:
        self.registry = registry
        self.max_pixels = registry.settings.max_pixels
        self.timeout = registry.settings.request_timeout_s
        self._pool = ThreadPoolExecutor(
            max_workers=decode_threads, thread_name_prefix="decode", initializer=name_os_thread
        )

    def model(self, name: str | None) -> ServedModel:
        return self.registry.get(name)

    async def assess(self, data: bytes, served: ServedModel, threshold: float) -> Verdict:
        try:
            return await self._assess(data, served, threshold)
        except BatcherClosedError:
            # A reload swapped the model while this request was decoding: serve it on the new one.
            current = self.registry.models.get(served.name)
            if current is None or current is served:
                raise
            return await self._assess(data, current, threshold)

    async def _assess(self, data: bytes, served: ServedModel, threshold: float) -> Verdict:
        model = served.model
        if served.batcher.full:  # refuse before spending decode time on a request that cannot be queued
            raise QueueFullError("inference queue is full")
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        x = await loop.run_in_executor(self._pool, preprocess_bytes, data, model.spec, self.max_pixels)
        metrics.DECODE_DURATION.labels(model.name).observe(time.perf_counter() - start)
        p_useful = await served.batcher.submit(x, self.timeout)
        useful, label, confidence = Prediction(p_useful).verdict(threshold)
        metrics.PREDICTIONS.labels(model.name, label).inc()
        return Verdict(useful, label, confidence, p_useful, threshold, model.name, model.version, model.task)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
