"""Response shapes, for validation-free serialisation and the OpenAPI documentation."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str = Field(examples=["utility-classification"])
    version: str = Field(examples=["2026.11.24"])
    task: str = Field(examples=["classification"])


class UtilityResult(BaseModel):
    useful: bool = Field(description="p_useful >= threshold")
    label: str = Field(description="'useful' or 'non-useful'", examples=["useful"])
    confidence: float = Field(description="probability of the returned label", examples=[0.97])
    p_useful: float = Field(description="probability that the image is useful", examples=[0.97])
    threshold: float = Field(examples=[0.5])
    model: ModelRef


class ItemError(BaseModel):
    status: int = Field(examples=[400])
    detail: str = Field(examples=["not a supported image (JPEG, PNG, WebP, BMP, TIFF, GIF)"])


class BatchItem(BaseModel):
    filename: str | None = None
    useful: bool | None = None
    label: str | None = None
    confidence: float | None = None
    p_useful: float | None = None
    threshold: float | None = None
    model: ModelRef | None = None
    error: ItemError | None = None


class BatchResult(BaseModel):
    results: list[BatchItem]


class ErrorBody(BaseModel):
    detail: str


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
