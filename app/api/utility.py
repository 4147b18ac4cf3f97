"""POST /utility and /utility/batch: read the image(s), hand them to the assessor, shape the answer."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from app.api import errors
from app.api.deps import AssessorDep, SettingsDep
from app.api.schemas import BatchResult, UtilityResult, error_responses
from app.preprocess import CONTENT_TYPES
from app.settings import Settings

router = APIRouter(tags=["utility"])

ModelParam = Annotated[
    str | None,
    Query(max_length=128, description="A loaded model's name; default: UTILITY_DEFAULT_MODEL or the first by name"),
]
ThresholdParam = Annotated[float, Query(ge=0.0, le=1.0, description="useful when p_useful >= threshold")]
RAW_TYPES = (*CONTENT_TYPES, "application/octet-stream")
_BINARY = {"schema": {"type": "string", "format": "binary"}}
SINGLE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            **{t: _BINARY for t in ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff", "image/gif")},
        },
    }
}
BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["files"],
                }
            }
        },
    }
}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _form(request: Request, max_files: int, max_fields: int) -> FormData:
    try:
        return await request.form(max_files=max_files, max_fields=max_fields)
    except HTTPException as exc:
        if "Too many files" in str(exc.detail):
            raise errors.TooManyItemsError(f"too many files: at most {max_files} per request") from None
        raise


async def read_image(request: Request, settings: Settings) -> tuple[bytes, str | None]:
    """The image bytes from a multipart 'file' part or a raw image body."""
    mime = media_type(request)
    try:
        async with asyncio.timeout(settings.request_timeout_s):
            if mime == "multipart/form-data":
                form = await _form(request, max_files=1, max_fields=16)
                try:
                    part = form.get("file")
                    if not isinstance(part, UploadFile):
                        raise errors.PayloadError("multipart body needs a 'file' part holding the image")
                    return await part.read(), part.filename
                finally:
                    await form.close()
            if mime in RAW_TYPES:
                return await request.body(), None
    except TimeoutError:
        raise errors.RequestTimeoutError(f"body not received within {settings.request_timeout_s:g} s") from None
    raise errors.UnsupportedMediaTypeError(
        f"content type {mime or 'none'!r} is not supported: send multipart/form-data with a 'file' part, "
        f"or the raw image as one of {', '.join(sorted(CONTENT_TYPES))}"
    )


@router.post(
    "/utility",
    response_model=UtilityResult,
    summary="Is this image useful for machines?",
    openapi_extra=SINGLE_BODY,
    responses=error_responses(400, 404, 408, 413, 415, 422, 429, 500, 503, 504),
)
async def utility(
    request: Request,
    assessor: AssessorDep,
    settings: SettingsDep,
    model: ModelParam = None,
    threshold: ThresholdParam = 0.5,
) -> dict:
    served = assessor.model(model)
    data, _ = await read_image(request, settings)
    verdict = await assessor.assess(data, served, threshold)
    return verdict.as_dict()


async def _one(assessor, part: UploadFile, served, threshold: float) -> dict:
    try:
        verdict = await assessor.assess(await part.read(), served, threshold)
        return {"filename": part.filename, **verdict.as_dict()}
    except Exception as exc:
        status, _, _ = errors.status_for(exc)
        if status == 500:
            errors.log.exception("batch item %s failed", part.filename)
        return {"filename": part.filename, "error": {"status": status, "detail": errors.public_detail(exc, status)}}


@router.post(
    "/utility/batch",
    response_model=BatchResult,
    summary="Assess several images; results in the same order, errors per item",
    openapi_extra=BATCH_BODY,
    responses=error_responses(400, 404, 408, 413, 415, 422, 503),
)
async def utility_batch(
    request: Request,
    assessor: AssessorDep,
    settings: SettingsDep,
    model: ModelParam = None,
    threshold: ThresholdParam = 0.5,
) -> dict:
    served = assessor.model(model)
    if media_type(request) != "multipart/form-data":
        raise errors.UnsupportedMediaTypeError("send multipart/form-data with one or more 'files' parts")
    try:
        async with asyncio.timeout(settings.request_timeout_s):
            form = await _form(request, max_files=settings.max_batch_items, max_fields=settings.max_batch_items + 16)
    except TimeoutError:
        raise errors.RequestTimeoutError(f"body not received within {settings.request_timeout_s:g} s") from None
    try:
        parts = [p for p in form.getlist("files") if isinstance(p, UploadFile)]
        if not parts:
            raise errors.PayloadError("multipart body needs one or more 'files' parts")
        results = await asyncio.gather(*(_one(assessor, p, served, threshold) for p in parts))
    finally:
        await form.close()
    return {"results": results}
