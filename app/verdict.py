"""The answer: the useful / non-useful rule and the one result type that the service returns,
``image-utility score`` writes and the client reads back.

Standard library only, so that :mod:`app.client` needs nothing but httpx.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

USEFUL = "useful"
NON_USEFUL = "non-useful"
DEFAULT_THRESHOLD = 0.5  # a model whose metadata names no default threshold gets this one
DECIMALS = 6  # probabilities are rounded to this many places in every answer


def decide(p_useful: float, threshold: float) -> tuple[bool, str, float]:
    """(useful, label, probability of that label): useful when p_useful >= threshold."""
    useful = p_useful >= threshold
    return useful, (USEFUL if useful else NON_USEFUL), (p_useful if useful else 1.0 - p_useful)


@dataclass(frozen=True)
class ModelInfo:
    """Which model answered."""

    name: str
    version: str
    task: str


@dataclass(frozen=True)
class UtilityResult:
    """The verdict on one image."""

    __pydantic_config__ = {"use_attribute_docstrings": True}  # field docstrings become the OpenAPI descriptions

    useful: bool
    """p_useful >= threshold"""
    label: str
    """'useful' or 'non-useful'"""
    confidence: float
    """probability of the returned label"""
    p_useful: float
    """probability that the image is useful"""
    threshold: float
    """the threshold applied: the request's, else the model's default"""
    model: ModelInfo
    filename: str | None = None
    """the multipart part's filename (batch answers)"""

    @classmethod
    def decide(cls, p_useful: float, threshold: float, model: ModelInfo, filename: str | None = None) -> UtilityResult:
        useful, label, confidence = decide(p_useful, threshold)
        return cls(useful, label, round(confidence, DECIMALS), round(p_useful, DECIMALS), threshold, model, filename)

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer; ``filename`` only when there is one."""
        body = {
            "useful": self.useful,
            "label": self.label,
            "confidence": self.confidence,
            "p_useful": self.p_useful,
            "threshold": self.threshold,
            "model": {"name": self.model.name, "version": self.model.version, "task": self.model.task},
        }
        return body if self.filename is None else {"filename": self.filename, **body}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UtilityResult:
        fields = ("useful", "label", "confidence", "p_useful", "threshold")
        return cls(**{k: data[k] for k in fields}, model=ModelInfo(**data["model"]), filename=data.get("filename"))


@dataclass(frozen=True)
class ItemError:
    """One image of a batch that could not be assessed; the others still were."""

    status: int
    detail: str
    filename: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"filename": self.filename, "error": {"status": self.status, "detail": self.detail}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ItemError:
        return cls(data["error"]["status"], data["error"]["detail"], data.get("filename"))
