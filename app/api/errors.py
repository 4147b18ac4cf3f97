"""Error kinds -> HTTP status codes. Bodies carry FastAPI's ``detail`` and never internals."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from app import metrics
from app.batcher import BatcherClosedError, BatchFailedError, InferenceTimeoutError, QueueFullError
from app.preprocess import ImageDecodeError, ImageTooLargeError
from app.registry import NotReadyError, UnknownModelError

log = logging.getLogger(__name__)


class BodyTooLargeError(Exception):
    """The request body went over max_body_bytes (413)."""


class UnsupportedMediaTypeError(Exception):
    """The content type is not an image or multipart (415)."""


class PayloadError(Exception):
    """The request is well-typed but its payload is unusable (400), e.g. no 'file' part."""


class RequestTimeoutError(Exception):
    """The client took too long to send its body (408)."""


class TooManyItemsError(Exception):
    """A batch request has more items than max_batch_items (413)."""


# exception class -> (status, reason label for metrics, retry-after seconds or None)
STATUS: dict[type[BaseException], tuple[int, str, int | None]] = {
    ImageDecodeError: (400, "not_an_image", None),
    PayloadError: (400, "bad_payload", None),
    ClientDisconnect: (400, "client_disconnected", None),
    ImageTooLargeError: (413, "too_many_pixels", None),
    BodyTooLargeError: (413, "body_too_large", None),
    TooManyItemsError: (413, "too_many_items", None),
    UnsupportedMediaTypeError: (415, "unsupported_media_type", None),
    RequestTimeoutError: (408, "body_timeout", None),
    UnknownModelError: (404, "unknown_model", None),
    QueueFullError: (429, "queue_full", 1),
    NotReadyError: (503, "not_ready", 5),
    BatcherClosedError: (503, "shutting_down", 5),
    InferenceTimeoutError: (504, "timeout", None),
    BatchFailedError: (500, "inference_failed", None),
}


def status_for(exc: BaseException) -> tuple[int, str, int | None]:
    for cls, value in STATUS.items():
        if isinstance(exc, cls):
            return value
    return 500, "internal", None


def public_detail(exc: BaseException, status: int) -> str:
    if status >= 500 and status != 503:
        return "internal server error" if status == 500 else "inference timed out"
    text = exc.args[0] if exc.args else str(exc)
    return str(text)


def error_response(exc: BaseException, request_id: str | None = None) -> JSONResponse:
    status, reason, retry_after = status_for(exc)
    metrics.REJECTED.labels(reason).inc()
    body: dict = {"detail": public_detail(exc, status)}
    if status >= 500 and request_id:
        body["request_id"] = request_id
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        if status_for(exc)[0] == 500:
            log.error("request %s failed", request_id, exc_info=exc, extra={"request_id": request_id})
        return error_response(exc, request_id)

    for cls in (*STATUS, Exception):
        app.add_exception_handler(cls, handle)
