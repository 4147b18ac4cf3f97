"""Image bytes -> verdict: every stage of the request path, in order, in one place.

model -> decode (off the event loop, within the decode memory budget) -> queue -> batch ->
predict -> verdict. Shared by ``/utility``, ``/utility/batch`` and ``/gate``; knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from app import telemetry
from app.batcher import BatcherClosedError, QueueFullError
from app.decodebudget import DecodeBudget
from app.osthreads import name_os_thread
from app.preprocess import preprocess_bytes
from app.registry import ModelRegistry, ServedModel
from app.verdict import UtilityResult


class Assessor:
    def __init__(self, registry: ModelRegistry, decode_threads: int) -> None:
        self.registry = registry
        settings = registry.settings
        self.max_pixels = settings.max_pixels
        self.max_decode_bytes = settings.max_decode_mb * 2**20
        self.budget = DecodeBudget(settings.decode_budget_mb * 2**20)
        self.timeout = settings.request_timeout_s
        # Decodes submitted and not yet finished, bounded like the batch queue: past it a request
        # is a quick 429, not a wait in an unbounded executor queue (which held photos for 40 s
        # when costly hostile files took the decode threads).
        self.max_decoding = settings.queue_size
        self._decoding = 0
        self._decoding_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=decode_threads, thread_name_prefix="decode", initializer=name_os_thread
        )

    def check_model(self, model: str | None) -> None:
        """Raise now if ``model`` cannot be served (unknown, or nothing loaded): before a body is read."""
        self.registry.get(model)

    async def assess(
        self, data: bytes, model: str | None, threshold: float | None, filename: str | None = None
    ) -> UtilityResult:
        """The verdict on one image, by the named model (default: the registry's) at ``threshold``
        (default: the model's)."""
        served = self.registry.get(model)
        try:
            return await self._run(data, served, threshold, filename)
        except BatcherClosedError:
            # A reload swapped the model while this request was decoding: serve it on the new one.
            current = self.registry.models.get(served.name)
            if current is None or current is served:
                raise
            return await self._run(data, current, threshold, filename)

    async def _run(
        self, data: bytes, served: ServedModel, threshold: float | None, filename: str | None
    ) -> UtilityResult:
        model, batcher = served.model, served.batcher
        batcher.check_room()  # refuse before spending decode time on a request that cannot be queued
        start = time.perf_counter()
        decode = functools.partial(
            preprocess_bytes,
            data,
            model.spec,
            self.max_pixels,
            max_bytes=self.max_decode_bytes,
            budget=self.budget,
            wait_s=self.timeout,
        )
        x = await self._decode(decode)
        telemetry.DECODE_DURATION.labels(model.name).observe(time.perf_counter() - start)
        p_useful = await batcher.submit(x, self.timeout)  # queue -> batch -> predict
        chosen = model.default_threshold if threshold is None else threshold
        result = UtilityResult.decide(p_useful, chosen, model.info, filename)
        telemetry.PREDICTIONS.labels(model.name, result.label).inc()
        return result

    async def _decode(self, decode: Callable[[], np.ndarray]) -> np.ndarray:
        with self._decoding_lock:
            if self._decoding >= self.max_decoding:
                raise QueueFullError(f"decode queue is full ({self._decoding} images waiting to be decoded)")
            self._decoding += 1
        # in this request's context, so the decoder's own log lines carry its request id
        job = self._pool.submit(contextvars.copy_context().run, decode)
        job.add_done_callback(self._decoded)  # when the thread is done, even if the request is gone
        return await asyncio.wrap_future(job)

    def _decoded(self, _job: Future) -> None:
        with self._decoding_lock:
            self._decoding -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
