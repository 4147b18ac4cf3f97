"""Pure ASGI middleware: request ids, the body-size limit, request metrics and access logs.

An error answer (4xx/5xx) sent before the request body has all arrived closes the connection:
the rest of that body would otherwise be read as the next request (or never come).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import telemetry
from app.api.errors import BodyTooLargeError, error_response
from app.logging_setup import REQUEST_ID

log = logging.getLogger("app.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return bool(length and length.strip() != "0") or _header(scope, b"transfer-encoding") is not None


class _Exchange:
    """One request's side of the bookkeeping: its id, the status sent, whether its body has all arrived."""

    def __init__(self, scope: Scope, send: Send, limit: int) -> None:
        given = _header(scope, b"x-request-id")
        self.request_id = given if given and _SAFE_ID.match(given) else uuid.uuid4().hex
        self.status = 500
        self.body_done = not _has_body(scope)
        self.received = 0
        self._send = send
        self._limit = limit

    def too_large(self) -> BodyTooLargeError:
        return BodyTooLargeError(f"request body is over the limit of {self._limit} bytes")

    def receive_from(self, receive: Receive) -> Receive:
        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self._limit:
                    raise self.too_large()
                self.body_done = self.body_done or not message.get("more_body", False)
            return message

        return limited_receive

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = [*message.get("headers", []), (b"x-request-id", self.request_id.encode())]
            if self.status >= 400 and not self.body_done:
                headers.append((b"connection", b"close"))
            message["headers"] = headers
        await self._send(message)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, access_log: bool = True) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, send, self.max_body_bytes)
        scope.setdefault("state", {})["request_id"] = exchange.request_id
        token = REQUEST_ID.set(exchange.request_id)
        start = time.perf_counter()
        try:
            if self._declared_too_large(scope):
                await error_response(exchange.too_large())(scope, receive, exchange.send)
            else:
                await self.app(scope, exchange.receive_from(receive), exchange.send)
        finally:
            self._record(scope, exchange, time.perf_counter() - start)
            REQUEST_ID.reset(token)

    def _declared_too_large(self, scope: Scope) -> bool:
        length = _header(scope, b"content-length")
        return bool(length and length.isdigit() and int(length) > self.max_body_bytes)

    def _record(self, scope: Scope, exchange: _Exchange, elapsed: float) -> None:
        template = getattr(scope.get("route"), "path", None) or "unmatched"
        telemetry.REQUESTS.labels(template, str(exchange.status)).inc()
        telemetry.REQUEST_DURATION.labels(template).observe(elapsed)
        if self.access_log:
            log.info(
                "%s %s %d",
                scope["method"],
                template,
                exchange.status,
                extra={
                    "request_id": exchange.request_id,
                    "status": exchange.status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
