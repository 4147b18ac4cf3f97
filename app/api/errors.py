"""Error kinds -> HTTP answers: each kind's status code is written here and nowhere else.

Bodies are ``{"detail": ...}`` and never hold internals: server errors get a fixed text (and the
request id); the details go to the logs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from app import telemetry
from app.batcher import BatcherClosedError, BatchFailedError, InferenceTimeoutError, QueueFullError
from app.decodebudget import DecodeBusyError
from app.preprocess import DecodeTooLargeError, ImageDecodeError, ImageTooLargeError
from app.registry import NotReadyError, UnknownModelError

log = logging.getLogger(__name__)


class BodyTooLargeError(Exception):
    """The request body went over max_body_bytes."""


class UnsupportedMediaTypeError(Exception):
    """The content type is not an image or multipart."""


class PayloadError(Exception):
    """The request is well-typed but its payload is unusable, e.g. no 'file' part."""


class RequestTimeoutError(Exception):
    """The client took too long to send its body."""


class TooManyItemsError(Exception):
    """A batch request has more items than max_batch_items."""


class TooManyConnectionsError(Exception):
    """The server holds max_connections open connections already."""


class UnknownTargetError(LookupError):
    """The gate has no target by that name."""


class GatePathError(ValueError):
    """The gate's path would leave the target's base URL."""


class UpstreamError(Exception):
    """The gate's upstream failed after the verdict was made; ``headers`` go on the answer (the verdict's)."""

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.headers = headers or {}


class UpstreamTimeoutError(UpstreamError):
    """The gate's upstream did not answer within gate_timeout_s."""


class UpstreamUnreachableError(UpstreamError):
    """The gate's upstream could not be reached."""


@dataclass(frozen=True)
class ErrorKind:
    status: int
    reason: str | None  # label of utility_rejected_total; None: not a refusal of the input, not counted
    retry_after: int | None = None  # seconds, sent as Retry-After
    public: str | None = None  # fixed body text; None: the exception's own message


INTERNAL = ErrorKind(500, "internal", public="internal server error")
KINDS: dict[type[BaseException], ErrorKind] = {
    ImageDecodeError: ErrorKind(400, "not_an_image"),
    PayloadError: ErrorKind(400, "bad_payload"),
    ClientDisconnect: ErrorKind(400, "client_disconnected"),
    GatePathError: ErrorKind(400, "bad_gate_path"),
    UnknownModelError: ErrorKind(404, "unknown_model"),
    UnknownTargetError: ErrorKind(404, "unknown_gate_target"),
    RequestTimeoutError: ErrorKind(408, "body_timeout"),
    DecodeTooLargeError: ErrorKind(413, "decode_too_large"),
    ImageTooLargeError: ErrorKind(413, "too_many_pixels"),
    BodyTooLargeError: ErrorKind(413, "body_too_large"),
    TooManyItemsError: ErrorKind(413, "too_many_items"),
    UnsupportedMediaTypeError: ErrorKind(415, "unsupported_media_type"),
    QueueFullError: ErrorKind(429, "queue_full", retry_after=1),
    BatchFailedError: ErrorKind(500, "inference_failed", public="internal server error"),
    UpstreamUnreachableError: ErrorKind(502, None),
    NotReadyError: ErrorKind(503, "not_ready", retry_after=5),
    BatcherClosedError: ErrorKind(503, "shutting_down", retry_after=5),
    TooManyConnectionsError: ErrorKind(503, "too_many_connections", retry_after=1),
    DecodeBusyError: ErrorKind(503, "decode_busy", retry_after=1),
    InferenceTimeoutError: ErrorKind(504, "timeout", public="inference timed out"),
    UpstreamTimeoutError: ErrorKind(504, None),
}


def kind_of(exc: BaseException) -> ErrorKind:
    for cls, kind in KINDS.items():
        if isinstance(exc, cls):
            return kind
    return INTERNAL


def public_detail(exc: BaseException, kind: ErrorKind) -> str:
    if kind.public is not None:
        return kind.public
    return str(exc.args[0] if exc.args else exc)


def error_response(exc: BaseException, request_id: str | None = None) -> JSONResponse:
    kind = kind_of(exc)
    if kind.reason:
        telemetry.REJECTED.labels(kind.reason).inc()
    body: dict = {"detail": public_detail(exc, kind)}
    if kind.status >= 500 and request_id:
        body["request_id"] = request_id
    headers = {"Retry-After": str(kind.retry_after)} if kind.retry_after is not None else {}
    if isinstance(exc, UpstreamError):
        headers |= exc.headers
    return JSONResponse(body, status_code=kind.status, headers=headers)


def install(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        if kind_of(exc).status == 500:
            log.error("request %s failed", request_id, exc_info=exc, extra={"request_id": request_id})
        return error_response(exc, request_id)

    for cls in (*KINDS, Exception):
        app.add_exception_handler(cls, handle)
