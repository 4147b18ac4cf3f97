"""Response shapes for the OpenAPI documentation. The answer itself is :class:`app.verdict.UtilityResult`."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.verdict import UtilityResult


class ErrorBody(BaseModel):
    detail: str


class ItemErrorBody(BaseModel):
    status: int = Field(examples=[400])
    detail: str = Field(examples=["not a supported image (JPEG, PNG, WebP, BMP, TIFF, GIF)"])


class BatchItemError(BaseModel):
    """A file of the batch that could not be assessed (:class:`app.verdict.ItemError` on the wire)."""

    filename: str | None = None
    error: ItemErrorBody


class BatchResult(BaseModel):
    results: list[UtilityResult | BatchItemError]


def error_responses(*codes: int) -> dict[int | str, dict]:
    text = {
        400: "Not an image, truncated or corrupt, or no 'file' part",
        404: "Unknown model",
        408: "The body arrived too slowly",
        413: "Body over max_body_bytes, image over max_pixels, or too many batch items",
        415: "Content type is neither multipart/form-data nor a supported image type",
        422: "Bad query parameters",
        429: "Inference queue full; retry after the Retry-After header's seconds",
        500: "Bug; details only in the logs, under the request id",
        503: "Not ready (no model loaded, or shutting down)",
        504: "No result within request_timeout_s",
    }
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}
