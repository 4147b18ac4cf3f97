"""The batcher on its own, with a real asyncio queue and real threads."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from app.batcher import Batcher, BatcherClosedError, BatchFailedError, InferenceTimeoutError, QueueFullError
from app.osthreads import name_os_thread

pytestmark = pytest.mark.anyio


def double_first(batch: np.ndarray) -> np.ndarray:
    return batch[:, 0] * 2


async def test_collects_up_to_max_batch_size_and_maps_outputs_back():
    sizes: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return double_first(batch)

    b = Batcher(predict, max_batch_size=8, max_wait_ms=50, queue_size=64)
    b.start()
    out = await asyncio.gather(*(b.submit(np.array([float(i)], np.float32), 5) for i in range(20)))
    await b.stop()
    assert out == [2.0 * i for i in range(20)]
    assert max(sizes) == 8 and sum(sizes) == 20


async def test_a_failing_batch_fails_its_requests_and_the_loop_goes_on():
    def predict(batch: np.ndarray) -> np.ndarray:
        if (batch < 0).any():
            raise ValueError("boom")
        return double_first(batch)

    b = Batcher(predict, max_batch_size=4, max_wait_ms=0, queue_size=8)
    b.start()
    with pytest.raises(BatchFailedError):
        await b.submit(np.array([-1.0], np.float32), 5)
    assert await b.submit(np.array([3.0], np.float32), 5) == 6.0
    await b.stop()


async def test_wrong_output_count_is_refused():
    b = Batcher(lambda batch: np.zeros(len(batch) + 1), max_batch_size=2, max_wait_ms=0, queue_size=4)
    b.start()
    with pytest.raises(BatchFailedError):
        await b.submit(np.zeros(1, np.float32), 5)
    await b.stop()


async def test_a_request_waiting_too_long_times_out():
    gate = threading.Event()
    b = Batcher(lambda batch: (gate.wait(5), double_first(batch))[1], max_batch_size=1, max_wait_ms=0, queue_size=4)
    b.start()
    with pytest.raises(InferenceTimeoutError):
        await b.submit(np.array([1.0], np.float32), 0.05)
    gate.set()
    assert await b.submit(np.array([2.0], np.float32), 5) == 4.0
    await b.stop()


async def test_queue_bound_and_drain_on_stop():
    gate = threading.Event()

    def blocked(batch: np.ndarray) -> np.ndarray:
        gate.wait(5)
        return double_first(batch)

    b = Batcher(blocked, max_batch_size=1, max_wait_ms=0, queue_size=2)
    b.start()
    first = asyncio.create_task(b.submit(np.array([1.0], np.float32), 5))
    await asyncio.sleep(0.05)  # the worker holds the first item
    queued = [asyncio.create_task(b.submit(np.array([float(i)], np.float32), 5)) for i in (2, 3)]
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFullError):
        await b.submit(np.array([9.0], np.float32), 5)
    stopping = asyncio.create_task(b.stop(drain_timeout=5))
    await asyncio.sleep(0.01)
    with pytest.raises(BatcherClosedError):
        await b.submit(np.array([1.0], np.float32), 1)
    gate.set()
    await stopping
    assert await first == 2.0
    assert [await q for q in queued] == [4.0, 6.0]  # drained, not dropped


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        Batcher(double_first, max_batch_size=0, max_wait_ms=1, queue_size=1)


def test_pool_threads_carry_their_name_to_the_os():
    """top -H, py-spy and the benchmark's CPU split by role read the OS thread name."""

    def comm() -> str:
        return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

    with ThreadPoolExecutor(1, thread_name_prefix="decode", initializer=name_os_thread) as pool:
        assert pool.submit(comm).result() == "decode_0"
