"""The hot path: ``POST /utility`` with a raw image body, served without the framework's routing.

Profiling the event loop under load (py-spy, ``docs/performance.md``) put most of its time per
request in FastAPI's routing, dependency injection and response validation rather than in HTTP or
in our batching. This ASGI middleware answers exactly the common request, a raw image body with at
most the ``model`` and ``threshold`` query parameters, with the same calls the route makes
(:mod:`app.api.body`, :class:`~app.assessor.Assessor`, :mod:`app.api.errors`), and hands every
other request to the app unchanged: multipart bodies, other routes and anything it does not
recognise, including a query it cannot parse, which the route then refuses with its usual 422.
``tests/app/api/test_fastpath.py`` checks that both paths answer alike.
"""

from __future__ import annotations

import json
import logging
import math
import re
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import errors
from app.api.body import RAW_TYPES, arrival_deadline

log = logging.getLogger(__name__)
PATH = "/utility"
_NUMBER = re.compile(r"^[0-9.eE+-]{1,32}$")  # plain decimals only: anything else is the route's to judge


class _Route:
    """What the access log and the request metrics read from ``scope['route']``."""

    path = PATH


ROUTE = _Route()


def parse_query(raw: bytes) -> tuple[str | None, float | None] | None:
    """(model, threshold) when the query is one the route accepts as is; None: let the route decide."""
    if not raw:
        return None, None
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    params = dict(pairs)
    if len(params) != len(pairs) or not params.keys() <= {"model", "threshold"}:
        return None
    model = params.get("model")
    if model is not None and not 0 < len(model) <= 128:
        return None
    threshold = None
    if "threshold" in params:
        if not _NUMBER.match(params["threshold"]):
            return None
        try:
            threshold = float(params["threshold"])
        except ValueError:
            return None
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            return None
    return model, threshold


class UtilityFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = self._match(scope)
        if query is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = ROUTE
        request = Request(scope, receive)
        state = scope["app"].state
        try:
            state.assessor.check_model(query[0])
            async with arrival_deadline(state.settings.request_timeout_s):
                body = await request.body()
            result = await state.assessor.assess(body, *query)
        except Exception as exc:  # the route's exception handlers, in the same order of precedence
            await self._error(scope, exc)(scope, receive, send)
            return
        payload = json.dumps(result.as_dict(), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        await Response(payload.encode(), media_type="application/json")(scope, receive, send)

    @staticmethod
    def _match(scope: Scope) -> tuple[str | None, float | None] | None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            return None
        for key, value in scope["headers"]:
            if key == b"content-type":
                mime = value.decode("latin-1").split(";")[0].strip().lower()
                return parse_query(scope.get("query_string", b"")) if mime in RAW_TYPES else None
        return None

    @staticmethod
    def _error(scope: Scope, exc: Exception) -> Response:
        request_id = scope.get("state", {}).get("request_id")
        if errors.kind_of(exc).status == 500:
            log.error("request %s failed", request_id, exc_info=exc, extra={"request_id": request_id})
        return errors.error_response(exc, request_id)
