"""Reading request bodies: the image of ``/utility`` and ``/gate``, the files of ``/utility/batch``.

Every read runs under one deadline (``request_timeout_s``): a body that arrives slower is a 408.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from app.api.errors import PayloadError, RequestTimeoutError, TooManyItemsError, UnsupportedMediaTypeError
from app.preprocess import CONTENT_TYPES

MULTIPART = "multipart/form-data"
RAW_TYPES = (*CONTENT_TYPES, "application/octet-stream")


@dataclass(frozen=True)
class Upload:
    image: bytes
    filename: str | None = None
    body: bytes | None = None  # the whole request body, when the caller asked to keep it


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


@asynccontextmanager
async def arrival_deadline(seconds: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise RequestTimeoutError(f"body not received within {seconds:g} s") from None


async def read_form(request: Request, max_files: int, max_fields: int) -> FormData:
    try:
        return await request.form(max_files=max_files, max_fields=max_fields)
    except HTTPException as exc:
        if "Too many files" in str(exc.detail):
            raise TooManyItemsError(f"too many files: at most {max_files} per request") from None
        raise


async def read_upload(request: Request, timeout_s: float, *, keep_body: bool = False) -> Upload:
    """The image: a multipart 'file' part or a raw image body. ``keep_body``: also the body as sent."""
    mime = media_type(request)
    if mime != MULTIPART and mime not in RAW_TYPES:
        raise UnsupportedMediaTypeError(
            f"content type {mime or 'none'!r} is not supported: send multipart/form-data with a 'file' part, "
            f"or the raw image as one of {', '.join(sorted(CONTENT_TYPES))}"
        )
    async with arrival_deadline(timeout_s):
        body = await request.body() if keep_body or mime != MULTIPART else None
        if mime != MULTIPART:
            return Upload(body, None, body if keep_body else None)
        # a gated request's other parts are the upstream's business: room for them, not for a batch
        max_files, max_fields = (16, 256) if keep_body else (1, 16)
        form = await read_form(request, max_files, max_fields)
        try:
            part = form.get("file")
            if not isinstance(part, UploadFile):
                raise PayloadError("multipart body needs a 'file' part holding the image")
            return Upload(await part.read(), part.filename, body)
        finally:
            await form.close()


async def read_files(request: Request, timeout_s: float, max_files: int) -> FormData:
    """The parsed multipart body of a batch (the caller closes it); its 'files' parts are the images."""
    if media_type(request) != MULTIPART:
        raise UnsupportedMediaTypeError("send multipart/form-data with one or more 'files' parts")
    async with arrival_deadline(timeout_s):
        return await read_form(request, max_files=max_files, max_fields=max_files + 16)
