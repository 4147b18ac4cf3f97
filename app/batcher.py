"""Dynamic batching: gather concurrent requests into one model call. Knows nothing of HTTP.

Requests go into a bounded asyncio queue; worker tasks take the first waiting item, then keep
collecting until ``max_batch_size`` items or ``max_wait_ms`` after the first, and run the model
in a thread. Queue time and compute time are reported apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from app.osthreads import name_os_thread

log = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """The queue is at capacity."""


class InferenceTimeoutError(TimeoutError):
    """The request waited longer than its timeout."""


class BatchFailedError(RuntimeError):
    """The batch this request was in failed."""


class BatcherClosedError(RuntimeError):
    """The batcher is shutting down."""


@dataclass
class BatchObserver:
    """Callbacks for metrics; the defaults do nothing."""

    queue_wait: Callable[[float], None] = lambda s: None
    inference: Callable[[float, int], None] = lambda s, n: None
    depth: Callable[[int], None] = lambda n: None


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int,
        max_wait_ms: float,
        queue_size: int,
        instances: int = 1,
        observer: BatchObserver | None = None,
    ) -> None:
        if max_batch_size < 1 or queue_size < 1 or instances < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size, queue_size, instances must be >= 1 and max_wait_ms >= 0")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size)
        self._instances = instances
        self._executor = ThreadPoolExecutor(
            max_workers=instances, thread_name_prefix="infer", initializer=name_os_thread
        )
        self._observer = observer or BatchObserver()
        self._workers: list[asyncio.Task] = []
        self._closed = False
        self._busy = 0  # workers holding a batch taken off the queue

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def check_room(self) -> None:
        """Raise now what :meth:`submit` would raise for want of room, before the caller spends time on an input."""
        if self._closed:
            raise BatcherClosedError("service is shutting down")
        if self._queue.full():
            raise QueueFullError("inference queue is full")

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._run(), name=f"batcher-{i}") for i in range(self._instances)]

    async def submit(self, x: np.ndarray, timeout: float) -> float:
        """Queue one preprocessed input; return the model's output for it."""
        self.check_room()
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(x, future))  # cannot fail: nothing ran since check_room
        self._observer.depth(self._queue.qsize())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            future.cancel()  # the worker skips cancelled items
            raise InferenceTimeoutError(f"no result within {timeout:g} s") from None

    async def _collect(self, first: _Item) -> list[_Item]:
        items = [first]
        deadline = items[0].enqueued + self.max_wait
        while len(items) < self.max_batch_size:
            try:
                items.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        self._observer.depth(self._queue.qsize())
        return [it for it in items if not it.future.done()]

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            self._busy += 1
            try:
                await self._handle(await self._collect(first))
            finally:
                self._busy -= 1

    def _stack_and_predict(self, inputs: list[np.ndarray]) -> np.ndarray:
        return self._predict(np.stack(inputs))

    async def _handle(self, items: list[_Item]) -> None:
        if not items:
            return
        now = time.monotonic()
        for it in items:
            self._observer.queue_wait(now - it.enqueued)
        start = time.perf_counter()
        try:
            # stacked in the inference thread: a batch's copy is the loop's largest cost per request otherwise
            inputs = [it.x for it in items]
            out = await asyncio.get_running_loop().run_in_executor(self._executor, self._stack_and_predict, inputs)
            if len(out) != len(items):
                raise RuntimeError(f"model returned {len(out)} outputs for {len(items)} inputs")
        except Exception:
            log.exception("inference failed for a batch of %d", len(items))
            for it in items:
                if not it.future.done():
                    it.future.set_exception(BatchFailedError("inference failed"))
            return
        self._observer.inference(time.perf_counter() - start, len(items))
        for it, value in zip(items, out, strict=True):
            if not it.future.done():
                it.future.set_result(float(value))

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Refuse new work, finish what is queued or running (bounded), then stop the workers."""
        self._closed = True
        deadline = time.monotonic() + drain_timeout
        while (self._busy or not self._queue.empty()) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(BatcherClosedError("service is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)
