"""POST /gate/{target}/{path}: forward the request upstream only when its image is useful.

The upstream base URL comes from the ``gate_targets`` setting, never from the request; the
request's path is appended to it after checks that keep it under that base. One shared
``httpx.AsyncClient`` (this router's lifespan) does the forwarding; redirects are passed back,
not followed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from urllib.parse import quote, unquote_plus

import httpx
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from app import metrics
from app.api import errors
from app.api.deps import AssessorDep, SettingsDep
from app.api.schemas import error_responses
from app.api.utility import RAW_TYPES, SINGLE_BODY, media_type
from app.inference import Verdict
from app.settings import Settings

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


class GatePathError(ValueError):
    """The path would leave the target's base URL."""


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


def verdict_header(v: Verdict) -> str:
    return f"{v.label}; p={v.p_useful:.4f}; threshold={v.threshold:g}; model={v.model_name}/{v.model_version}"


async def read_gated(request: Request, settings: Settings) -> tuple[bytes, bytes]:
    """(the whole body, to forward unchanged; the image in it: a multipart 'file' part or the body)."""
    mime = media_type(request)
    if mime != "multipart/form-data" and mime not in RAW_TYPES:
        raise errors.UnsupportedMediaTypeError(
            f"content type {mime or 'none'!r} is not supported: send multipart/form-data with a 'file' part, "
            "or the raw image"
        )
    try:
        async with asyncio.timeout(settings.request_timeout_s):
            body = await request.body()
            if mime != "multipart/form-data":
                return body, body
            form = await request.form(max_files=16, max_fields=256)  # parses the cached body
            try:
                part = form.get("file")
                if not isinstance(part, UploadFile):
                    raise errors.PayloadError("multipart body needs a 'file' part holding the image")
                return body, await part.read()
            finally:
                await form.close()
    except TimeoutError:
        raise errors.RequestTimeoutError(f"body not received within {settings.request_timeout_s:g} s") from None


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


def _problem(status: int, detail: str, target: str, outcome: str) -> JSONResponse:
    metrics.GATE_REQUESTS.labels(target, outcome).inc()
    return JSONResponse({"detail": detail}, status_code=status)


async def forward(client: httpx.AsyncClient, request: Request, url: httpx.URL, body: bytes, target: str) -> Response:
    upstream = client.build_request(request.method, url, content=body, headers=forward_headers(request))
    try:
        answer = await client.send(upstream, stream=True)
    except httpx.TimeoutException:
        log.warning("gate %s: upstream timed out", target, extra={"target": target})
        return _problem(504, f"upstream {target!r} did not answer in time", target, "upstream_timeout")
    except httpx.TransportError as exc:
        log.warning("gate %s: upstream unreachable: %s", target, exc, extra={"target": target})
        return _problem(502, f"upstream {target!r} could not be reached", target, "upstream_error")
    metrics.GATE_REQUESTS.labels(target, "forwarded").inc()
    response = StreamingResponse(
        answer.aiter_raw(), status_code=answer.status_code, background=BackgroundTask(answer.aclose)
    )
    response.raw_headers = response_headers(answer.headers)
    return response


def response_headers(headers: httpx.Headers) -> list[tuple[bytes, bytes]]:
    """The upstream's headers, repeated ones kept, less hop-by-hop ones and those we set ourselves."""
    named = {t.strip().lower() for t in headers.get("connection", "").split(",")}  # hop-by-hop by RFC 9110 7.6.1
    return [(k, v) for k, v in headers.raw if k.decode("latin-1").lower() not in DROP_RESPONSE | named]


@router.post(
    "/gate/{target}/{path:path}",
    summary="Forward the request to the target's upstream only if its image is useful",
    openapi_extra=SINGLE_BODY,
    responses={
        **error_responses(400, 404, 408, 413, 415, 429, 503),
        422: {"description": "The image is not useful (body: detail + verdict); or bad utility_* parameters"},
        502: {"description": "The upstream could not be reached"},
        504: {"description": "The upstream did not answer within gate_timeout_s"},
    },
)
async def gate(
    target: str,
    path: str,
    request: Request,
    assessor: AssessorDep,
    settings: SettingsDep,
    utility_model: Annotated[str | None, Query(max_length=128, description="model to assess with")] = None,
    utility_threshold: Annotated[float, Query(ge=0.0, le=1.0, description="useful when p_useful >= this")] = 0.5,
) -> Response:
    base = settings.gate_targets.get(target)
    if base is None:
        return JSONResponse({"detail": f"unknown gate target {target!r}"}, status_code=404)
    try:
        url = upstream_url(str(base), path, request.url.query)
        served = assessor.model(utility_model)
        body, image = await read_gated(request, settings)
        verdict = await assessor.assess(image, served, utility_threshold)
    except GatePathError as exc:
        return _problem(400, str(exc), target, "bad_input")
    except Exception as exc:
        status = errors.status_for(exc)[0]
        metrics.GATE_REQUESTS.labels(target, "bad_input" if status < 500 and status != 429 else "unassessed").inc()
        raise
    header = {VERDICT_HEADER: verdict_header(verdict)}
    if not verdict.useful:
        metrics.GATE_REQUESTS.labels(target, "blocked").inc()
        content = {"detail": "image is not useful for machines", "verdict": verdict.as_dict()}
        return JSONResponse(content, status_code=422, headers=header)
    response = await forward(request.app.state.gate_client, request, url, body, target)
    response.headers.update(header)
    return response
