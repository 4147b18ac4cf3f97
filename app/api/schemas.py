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


class GateRefusal(BaseModel):
    """The gate's 422 for an image that is not useful: the upstream was never called."""

    detail: str = Field(examples=["image is not useful for machines"])
    verdict: UtilityResult


class Readiness(BaseModel):
    status: str = Field(examples=["not ready"])
    detail: str | None = Field(examples=["no models found in models"])
    models: list[str] = Field(examples=[[]])


class BatchResult(BaseModel):
    results: list[UtilityResult | BatchItemError]


ERRORS = {  # status -> (description, an example of the service's own detail)
    400: (
        "Not an image, truncated or corrupt, or no 'file' part",
        "multipart body needs a 'file' part holding the image",
    ),
    401: ("Missing or wrong token", "admin token required"),
    404: ("Unknown model", "model 'utility-detecton' is not loaded (loaded: utility-classification)"),
    408: ("The body arrived too slowly", "body not received within 10 s"),
    409: ("Reload failed; the old model is kept", "reload of 'utility-classification' failed: ContractError: ..."),
    413: (
        "Body over max_body_bytes, image over max_pixels, or too many batch items",
        "request body is over the limit of 20971520 bytes",
    ),
    415: (
        "Content type is neither multipart/form-data nor a supported image type",
        "send multipart/form-data with one or more 'files' parts",
    ),
    429: ("Inference queue full; retry after the Retry-After header's seconds", "inference queue is full"),
    500: ("Bug; details only in the logs, under the request id", "internal server error"),
    502: ("The upstream could not be reached", "upstream 'vision' could not be reached"),
    503: ("Not ready (no model loaded, or shutting down)", "no models found in models"),
    504: ("No result within request_timeout_s", "no result within 10 s"),
}


BAD_PARAMETERS = "Bad query parameters (threshold outside 0..1, ...): FastAPI's validation errors, detail a list"
VALIDATION = {
    "application/json": {
        "schema": {"$ref": "#/components/schemas/HTTPValidationError"},
        "example": {
            "detail": [
                {
                    "type": "less_than_equal",
                    "loc": ["query", "threshold"],
                    "msg": "Input should be less than or equal to 1",
                    "input": "1.5",
                    "ctx": {"le": 1.0},
                }
            ]
        },
    }
}


def error_responses(*codes: int, **described: str) -> dict[int | str, dict]:
    """OpenAPI entries for error statuses: ``{"detail": ...}`` with a real example; ``described`` as
    ``e404="..."`` overrides a description."""
    out: dict[int | str, dict] = {}
    for code in codes:
        if code == 422:  # FastAPI's own validation body: detail is a list
            out[code] = {"description": described.get("e422", BAD_PARAMETERS), "content": VALIDATION}
            continue
        text, example = ERRORS[code]
        out[code] = {
            "model": ErrorBody,
            "description": described.get(f"e{code}", text),
            "content": {"application/json": {"example": {"detail": example}}},
        }
    return out
