"""POST /utility and /utility/batch: read the image(s), hand them to the assessor, return its answer."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import UploadFile

from app.api import errors
from app.api.body import read_files, read_upload
from app.api.deps import AssessorDep, SettingsDep
from app.api.schemas import BatchResult, error_responses
from app.assessor import Assessor
from app.verdict import ItemError, UtilityResult

log = logging.getLogger(__name__)
router = APIRouter(tags=["utility"])

ModelParam = Annotated[
    str | None,
    Query(max_length=128, description="A loaded model's name; default: UTILITY_DEFAULT_MODEL or the first by name"),
]
ThresholdParam = Annotated[
    float | None,
    Query(ge=0.0, le=1.0, description="useful when p_useful >= threshold; default: the model's (GET /models)"),
]


@dataclass(frozen=True)
class Choice:
    """Which model, at which threshold: the query of both routes."""

    model: str | None
    threshold: float | None  # None: the model's default


async def choice(model: ModelParam = None, threshold: ThresholdParam = None) -> Choice:
    return Choice(model, threshold)


ChoiceDep = Annotated[Choice, Depends(choice)]
_BINARY = {"type": "string", "format": "binary"}


def _request_body(part: str, schema: dict, raw_types: tuple[str, ...] = ()) -> dict:
    """OpenAPI request body: multipart with one required ``part``, or one of ``raw_types`` as the body."""
    multipart = {"schema": {"type": "object", "properties": {part: schema}, "required": [part]}}
    raw = {t: {"schema": _BINARY} for t in raw_types}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": multipart, **raw}}}


_DOCUMENTED_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff", "image/gif")
SINGLE_BODY = _request_body("file", _BINARY, _DOCUMENTED_TYPES)
BATCH_BODY = _request_body("files", {"type": "array", "items": _BINARY})


@router.post(
    "/utility",
    response_model=UtilityResult,
    response_model_exclude_none=True,
    summary="Is this image useful for machines?",
    openapi_extra=SINGLE_BODY,
    responses=error_responses(400, 404, 408, 413, 415, 422, 429, 500, 503, 504),
)
async def utility(request: Request, assessor: AssessorDep, settings: SettingsDep, query: ChoiceDep) -> dict:
    assessor.check_model(query.model)
    upload = await read_upload(request, settings.request_timeout_s)
    return (await assessor.assess(upload.image, query.model, query.threshold)).as_dict()


async def _one(assessor: Assessor, part: UploadFile, query: Choice) -> dict:
    try:
        return (await assessor.assess(await part.read(), query.model, query.threshold, part.filename)).as_dict()
    except Exception as exc:
        kind = errors.kind_of(exc)
        if kind.status == 500:
            log.exception("batch item %s failed", part.filename)
        return ItemError(kind.status, errors.public_detail(exc, kind), part.filename).as_dict()


@router.post(
    "/utility/batch",
    response_model=BatchResult,
    summary="Assess several images; results in the same order, errors per item",
    openapi_extra=BATCH_BODY,
    responses=error_responses(400, 404, 408, 413, 415, 422, 503),
)
async def utility_batch(request: Request, assessor: AssessorDep, settings: SettingsDep, query: ChoiceDep) -> dict:
    assessor.check_model(query.model)  # an unknown model or a service not ready fails the request, not each item
    form = await read_files(request, settings.request_timeout_s, settings.max_batch_items)
    try:
        parts = [p for p in form.getlist("files") if isinstance(p, UploadFile)]
        if not parts:
            raise errors.PayloadError("multipart body needs one or more 'files' parts")
        results = await asyncio.gather(*(_one(assessor, p, query) for p in parts))
    finally:
        await form.close()
    return {"results": results}
