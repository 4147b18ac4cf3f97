"""uvicorn, with the connection limits it lacks: slow or silent clients cannot hold the service.

uvicorn has no deadline for receiving a request (its keep-alive timer only runs between requests
and any byte cancels it) and answers over-capacity requests with a plain-text 503 that keeps the
connection. :class:`GuardedProtocol` wraps its httptools protocol (as xorbitsai/inference did):

- **idle**: a connection that sends nothing, first or between requests, is closed after
  ``idle_timeout_s`` (uvicorn's keep-alive timer, armed at connect too);
- **receipt**: a request whose headers and body have not all arrived ``request_timeout_s`` after its
  first byte gets a 408 and the connection is closed (the app may still be waiting for the body);
- **cap**: beyond ``max_connections`` open connections, a new one gets a JSON 503 with
  ``Connection: close`` to its first request, before the app sees it.

Error bodies come from :func:`app.api.errors.error_response`, as every other answer's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.api.errors import RequestTimeoutError, TooManyConnectionsError, error_response
from app.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    request_timeout_s: float
    idle_timeout_s: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.request_timeout_s, settings.idle_timeout_s, settings.max_connections)


async def over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(TooManyConnectionsError("too many open connections; retry later"))
    response.headers["connection"] = "close"
    await response(scope, receive, send)


class GuardedProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._receipt: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.app = over_capacity  # this connection's requests only
        self.timeout_keep_alive_task = self.loop.call_later(self.limits.idle_timeout_s, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_receipt()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._stop_receipt()
        self._receipt = self.loop.call_later(self.limits.request_timeout_s, self._receipt_expired)

    def on_message_complete(self) -> None:
        self._stop_receipt()
        super().on_message_complete()

    def _stop_receipt(self) -> None:
        if self._receipt is not None:
            self._receipt.cancel()
            self._receipt = None

    def _receipt_expired(self) -> None:
        self._receipt = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and cycle.response_started:
            self.transport.close()  # an answer is on its way out: cut it short, the request never completed
            return
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app, still reading, sees a disconnect; its answer goes nowhere
            cycle.message_event.set()
        late = RequestTimeoutError(f"request not received within {self.limits.request_timeout_s:g} s")
        self._answer_and_close(error_response(late))

    def _answer_and_close(self, response: JSONResponse) -> None:
        """Write ``response`` straight to the socket (no app to send it through), then close."""
        head = [STATUS_LINE[response.status_code]]
        head += [name + b": " + value + b"\r\n" for name, value in response.raw_headers if name != b"connection"]
        self.transport.write(b"".join([*head, b"connection: close\r\n\r\n", response.body]))
        self.transport.close()
        log.info("request not received in time; connection closed", extra={"client": self.client})


def protocol_for(limits: ConnectionLimits) -> type[GuardedProtocol]:
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})


def options(settings: Settings) -> dict[str, Any]:
    """``uvicorn.run`` / ``uvicorn.Config`` keywords for ``image-utility serve``: our protocol and limits."""
    limits = ConnectionLimits.of(settings)
    return {
        "host": settings.host,
        "port": settings.port,
        "http": protocol_for(limits),
        "log_config": None,
        "timeout_keep_alive": limits.idle_timeout_s,  # between requests; GuardedProtocol arms it at connect too
        "timeout_graceful_shutdown": int(settings.request_timeout_s) + 5,
    }
