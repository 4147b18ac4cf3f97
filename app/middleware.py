"""Pure ASGI middleware: request ids, the body-size limit, request metrics and access logs."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import telemetry
from app.api.errors import BodyTooLargeError, error_response

log = logging.getLogger("app.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, access_log: bool = True) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _SAFE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            if self._declared_too_large(scope):
                await self._reject_413(scope, receive, send_with_id)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - start
            telemetry.REQUESTS.labels(template, str(status)).inc()
            telemetry.REQUEST_DURATION.labels(template).observe(elapsed)
            if self.access_log:
                log.info(
                    "%s %s %d",
                    scope["method"],
                    template,
                    status,
                    extra={"request_id": request_id, "status": status, "duration_ms": round(elapsed * 1000, 2)},
                )

    def _declared_too_large(self, scope: Scope) -> bool:
        length = _header(scope, b"content-length")
        return bool(length and length.isdigit() and int(length) > self.max_body_bytes)

    def _limited(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._too_large()
            return message

        return limited_receive

    async def _reject_413(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(self._too_large())(scope, receive, send)

    def _too_large(self) -> BodyTooLargeError:
        return BodyTooLargeError(f"request body is over the limit of {self.max_body_bytes} bytes")
