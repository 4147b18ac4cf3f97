"""A small client for the image-utility service: sync and async, typed results, polite retries.

Needs only httpx (no torch, no onnxruntime); results are :mod:`app.verdict`'s types::

    from app.client import UtilityClient

    with UtilityClient("http://localhost:8000") as utility:
        result = utility.assess("photo.jpg", threshold=0.6)
        if result.useful:
            ...

``threshold=None`` (the default) lets the service apply the model's own default threshold
(``GET /models`` lists it; ``result.threshold`` says which one was applied).

429 (queue full) and 503 (not ready, shutting down) are retried up to ``retries`` times, after the
server's ``Retry-After`` (capped at ``max_retry_wait``) or an exponential backoff. Other failures
raise :class:`UtilityError` with the status and the server's ``detail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import mimetypes
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from app.verdict import ItemError, ModelInfo, UtilityResult

__all__ = [
    "AsyncUtilityClient",
    "ItemError",
    "ModelInfo",
    "UtilityClient",
    "UtilityConnectionError",
    "UtilityError",
    "UtilityResult",
    "UtilityTimeoutError",
]

log = logging.getLogger(__name__)

Image = bytes | str | os.PathLike[str]
RETRY_STATUSES = (429, 503)


class UtilityError(Exception):
    """The service refused or failed the request (``status`` is None when no answer came)."""

    def __init__(self, status: int | None, detail: str | list[Any], request_id: str | None = None) -> None:
        # ``detail`` as the service sent it: a string, or FastAPI's list of validation errors (422)
        text = detail if isinstance(detail, str) else json.dumps(detail)
        super().__init__(f"{status}: {text}" if status else text)
        self.status = status
        self.detail = detail
        self.request_id = request_id


class UtilityTimeoutError(UtilityError):
    """No answer within the client's timeout."""


class UtilityConnectionError(UtilityError):
    """The service could not be reached."""


def _part(image: Image, index: int) -> tuple[str, bytes, str]:
    if isinstance(image, bytes | bytearray | memoryview):
        return f"image-{index}", bytes(image), "application/octet-stream"
    path = Path(image)
    return path.name, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _params(model: str | None, threshold: float | None) -> dict[str, str]:
    params = {"model": model, "threshold": None if threshold is None else repr(float(threshold))}
    return {k: v for k, v in params.items() if v is not None}


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _body(response: httpx.Response) -> dict[str, Any]:
    if response.is_success:
        return response.json()
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text or response.reason_phrase
    raise UtilityError(response.status_code, detail, response.headers.get("x-request-id"))


def _batch_items(body: dict[str, Any]) -> list[UtilityResult | ItemError]:
    return [
        ItemError.from_dict(item) if item.get("error") else UtilityResult.from_dict(item) for item in body["results"]
    ]


def _chunks(images: Sequence[Image], size: int) -> list[list[tuple[str, tuple[str, bytes, str]]]]:
    parts = [("files", _part(image, i)) for i, image in enumerate(images)]
    return [parts[i : i + size] for i in range(0, len(parts), size)]


class _Base:
    def __init__(self, base_url: str, timeout: float, retries: int, max_retry_wait: float, batch_size: int) -> None:
        if retries < 0 or max_retry_wait < 0 or not 1 <= batch_size <= 10_000 or timeout <= 0:
            raise ValueError("need retries >= 0, max_retry_wait >= 0, timeout > 0, 1 <= batch_size <= 10000")
        self.base_url = base_url.rstrip("/")
        self.timeout = httpx.Timeout(timeout)
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.batch_size = batch_size

    def _retry_wait(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when this answer is final."""
        if response.status_code not in RETRY_STATUSES or attempt >= self.retries:
            return None
        wait = _retry_after(response.headers.get("retry-after"))
        wait = min(self.max_retry_wait, wait if wait is not None else 0.25 * 2**attempt)
        log.info("image-utility answered %d; retry %d in %.2f s", response.status_code, attempt + 1, wait)
        return wait

    @contextlib.contextmanager
    def _transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as exc:
            raise UtilityTimeoutError(None, f"no answer from {self.base_url} within the timeout") from exc
        except httpx.TransportError as exc:
            raise UtilityConnectionError(None, f"cannot reach {self.base_url}: {exc}") from exc


class UtilityClient(_Base):
    """Blocking client. Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float = 30.0,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        batch_size: int = 32,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, timeout, retries, max_retry_wait, batch_size)
        self._http = httpx.Client(base_url=self.base_url, timeout=self.timeout, headers=headers, transport=transport)

    def assess(self, image: Image, *, model: str | None = None, threshold: float | None = None) -> UtilityResult:
        """Is this image (bytes or a file path) useful for machines? ``threshold``: default the model's."""
        body = self._post("/utility", [("file", _part(image, 0))], _params(model, threshold))
        return UtilityResult.from_dict(body)

    def assess_batch(
        self, images: Iterable[Image], *, model: str | None = None, threshold: float | None = None
    ) -> list[UtilityResult | ItemError]:
        """One result per image, in order; an unreadable image gives an :class:`ItemError` in its place."""
        results: list[UtilityResult | ItemError] = []
        for chunk in _chunks(list(images), self.batch_size):
            results += _batch_items(self._post("/utility/batch", chunk, _params(model, threshold)))
        return results

    def _post(self, path: str, files: list, params: dict[str, str]) -> dict[str, Any]:
        attempt = 0
        while True:
            with self._transport_errors():
                response = self._http.post(path, files=files, params=params)
            wait = self._retry_wait(response, attempt)
            if wait is None:
                return _body(response)
            time.sleep(wait)
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> UtilityClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncUtilityClient(_Base):
    """asyncio client; batches of more than ``batch_size`` images go out ``concurrency`` requests at a time."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float = 30.0,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        batch_size: int = 32,
        concurrency: int = 4,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, timeout, retries, max_retry_wait, batch_size)
        self._limit = asyncio.Semaphore(max(1, concurrency))
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=self.timeout, headers=headers, transport=transport
        )

    async def assess(self, image: Image, *, model: str | None = None, threshold: float | None = None) -> UtilityResult:
        body = await self._post("/utility", [("file", _part(image, 0))], _params(model, threshold))
        return UtilityResult.from_dict(body)

    async def assess_batch(
        self, images: Iterable[Image], *, model: str | None = None, threshold: float | None = None
    ) -> list[UtilityResult | ItemError]:
        params = _params(model, threshold)

        async def one(chunk: list) -> list[UtilityResult | ItemError]:
            async with self._limit:
                return _batch_items(await self._post("/utility/batch", chunk, params))

        chunks = await asyncio.gather(*(one(c) for c in _chunks(list(images), self.batch_size)))
        return [item for chunk in chunks for item in chunk]

    async def _post(self, path: str, files: list, params: dict[str, str]) -> dict[str, Any]:
        attempt = 0
        while True:
            with self._transport_errors():
                response = await self._http.post(path, files=files, params=params)
            wait = self._retry_wait(response, attempt)
            if wait is None:
                return _body(response)
            await asyncio.sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncUtilityClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
