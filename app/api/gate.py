"""POST /gate/{target}/{path}: forward the request upstream only when its image is useful.

The upstream base URL comes from the ``gate_targets`` setting, never from the request; the
request's path is appended to it after checks that keep it under that base. One shared
``httpx.AsyncClient`` (this router's lifespan) does the forwarding; redirects are passed back,
not followed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from urllib.parse import quote, unquote_plus

import httpx
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from app import telemetry
from app.api import errors
from app.api.assessment import SINGLE_BODY, Choice
from app.api.body import read_upload
from app.api.deps import AssessorDep, SettingsDep
from app.api.errors import GatePathError, UnknownTargetError, UpstreamTimeoutError, UpstreamUnreachableError
from app.api.schemas import GateRefusal, error_responses
from app.assessor import Assessor
from app.settings import Settings
from app.verdict import UtilityResult

log = logging.getLogger(__name__)

VERDICT_HEADER = "X-Utility-Verdict"
OWN_PARAMS = ("utility_model", "utility_threshold")  # read by the gate, never forwarded
# Request headers forwarded to the upstream; everything else (cookies, host, hop-by-hop,
# proxy credentials, content-length: recomputed) stays here.
FORWARD_REQUEST = (
    "accept",
    "accept-language",
    "authorization",
    "content-type",
    "user-agent",
    "traceparent",
    "tracestate",
)
# Response headers never passed back: hop-by-hop ones, and those this service sets itself.
DROP_RESPONSE = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "date",
    "server",
    "x-request-id",
    VERDICT_HEADER.lower(),
}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    timeout = httpx.Timeout(settings.gate_timeout_s)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        app.state.gate_client = client
        yield


router = APIRouter(tags=["gate"], lifespan=lifespan)


def upstream_url(base: str, path: str, query: str) -> httpx.URL:
    """base + '/' + path, percent-encoded again, with the query minus the gate's own params."""
    segments = path.split("/")
    if any(s in (".", "..") for s in segments) or "\\" in path or "://" in path or path.startswith("/"):
        raise GatePathError("path must stay under the target: no '.', '..', '//', '\\\\' or absolute URLs")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise GatePathError("path holds control characters")
    base_url = httpx.URL(base)
    joined = base_url.raw_path.decode().split("?")[0].rstrip("/") + "/" + quote(path, safe="/:@!$&'()*+,;=-._~")
    kept = [p for p in query.split("&") if p and unquote_plus(p.split("=")[0]) not in OWN_PARAMS]
    url = base_url.copy_with(raw_path=(joined + ("?" + "&".join(kept) if kept else "")).encode())
    if (url.scheme, url.host, url.port) != (base_url.scheme, base_url.host, base_url.port):
        raise GatePathError("path must stay under the target")
    return url


def verdict_header(v: UtilityResult) -> str:
    return f"{v.label}; p={v.p_useful:.4f}; threshold={v.threshold:g}; model={v.model.name}/{v.model.version}"


def forward_headers(request: Request) -> dict[str, str]:
    headers = {k: v for k in FORWARD_REQUEST if (v := request.headers.get(k)) is not None}
    # End-to-end encoding: the client's choice, or none (httpx would otherwise ask for gzip).
    headers["accept-encoding"] = request.headers.get("accept-encoding", "identity")
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        headers["x-request-id"] = request_id
    client = request.client.host if request.client else None
    prior = request.headers.get("x-forwarded-for")
    if client:
        headers["x-forwarded-for"] = f"{prior}, {client}" if prior else client
    return headers


async def forward(
    client: httpx.AsyncClient, request: Request, url: httpx.URL, body: bytes, target: str, header: dict[str, str]
) -> Response:
    """The upstream's answer, streamed back with ``header`` (the verdict) added; that header on failures too."""
    upstream = client.build_request(request.method, url, content=body, headers=forward_headers(request))
    try:
        answer = await client.send(upstream, stream=True)
    except httpx.TimeoutException:
        log.warning("gate %s: upstream timed out", target, extra={"target": target})
        raise UpstreamTimeoutError(f"upstream {target!r} did not answer in time", header) from None
    except httpx.TransportError as exc:
        log.warning("gate %s: upstream unreachable: %s", target, exc, extra={"target": target})
        raise UpstreamUnreachableError(f"upstream {target!r} could not be reached", header) from None
    response = StreamingResponse(
        answer.aiter_raw(), status_code=answer.status_code, background=BackgroundTask(answer.aclose)
    )
    response.raw_headers = response_headers(answer.headers)
    response.headers.update(header)
    return response


def outcome(exc: Exception) -> str:
    """The utility_gate_requests_total outcome of a request that failed with ``exc``."""
    if isinstance(exc, UpstreamTimeoutError):
        return "upstream_timeout"
    if isinstance(exc, UpstreamUnreachableError):
        return "upstream_error"
    status = errors.kind_of(exc).status
    return "bad_input" if status < 500 and status != 429 else "unassessed"


def response_headers(headers: httpx.Headers) -> list[tuple[bytes, bytes]]:
    """The upstream's headers, repeated ones kept, less hop-by-hop ones and those we set ourselves."""
    named = {t.strip().lower() for t in headers.get("connection", "").split(",")}  # hop-by-hop by RFC 9110 7.6.1
    return [(k, v) for k, v in headers.raw if k.decode("latin-1").lower() not in DROP_RESPONSE | named]


@router.post(
    "/gate/{target}/{path:path}",
    summary="Forward the request to the target's upstream only if its image is useful",
    openapi_extra=SINGLE_BODY,
    responses={
        **error_responses(
            400,
            404,
            408,
            413,
            415,
            429,
            502,
            503,
            504,
            e404="Unknown gate target, or utility_model names no loaded model",
            e502="The upstream could not be reached (refused, reset, DNS)",
            e504="The upstream did not answer within gate_timeout_s",
        ),
        422: {
            "model": GateRefusal,
            "description": "The image is not useful (detail + verdict); bad utility_* parameters give FastAPI's list",
        },
    },
)
async def gate(
    target: str,
    path: str,
    request: Request,
    assessor: AssessorDep,
    settings: SettingsDep,
    utility_model: Annotated[str | None, Query(max_length=128, description="model to assess with")] = None,
    utility_threshold: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="useful when p_useful >= this; default: the model's")
    ] = None,
) -> Response:
    base = settings.gate_targets.get(target)
    if base is None:  # not counted per target: the name comes from the client
        raise UnknownTargetError(f"unknown gate target {target!r}")
    query = Choice(utility_model, utility_threshold)
    try:
        url = upstream_url(str(base), path, request.url.query)
        return await _gate(request, assessor, settings.request_timeout_s, url, target, query)
    except Exception as exc:
        telemetry.GATE_REQUESTS.labels(target, outcome(exc)).inc()
        raise


async def _gate(
    request: Request, assessor: Assessor, timeout_s: float, url: httpx.URL, target: str, query: Choice
) -> Response:
    assessor.check_model(query.model)
    upload = await read_upload(request, timeout_s, keep_body=True)
    verdict = await assessor.assess(upload.image, query.model, query.threshold)
    header = {VERDICT_HEADER: verdict_header(verdict)}
    if not verdict.useful:
        telemetry.GATE_REQUESTS.labels(target, "blocked").inc()
        content = {"detail": "image is not useful for machines", "verdict": verdict.as_dict()}
        return JSONResponse(content, status_code=422, headers=header)
    response = await forward(request.app.state.gate_client, request, url, upload.body, target, header)
    telemetry.GATE_REQUESTS.labels(target, "forwarded").inc()
    return response
