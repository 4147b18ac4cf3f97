"""The verdict rule and the answer type shared by the service, `score` and the client."""

from __future__ import annotations

import pytest

from app.verdict import NON_USEFUL, USEFUL, ItemError, ModelInfo, UtilityResult, decide

TINY = ModelInfo("tiny", "test-1", "classification")


@pytest.mark.parametrize(
    ("p_useful", "threshold", "want"),
    [
        pytest.param(0.5, 0.5, (True, USEFUL, 0.5), id="at-the-threshold-is-useful"),
        pytest.param(0.3, 0.5, (False, NON_USEFUL, 0.7), id="below"),
        pytest.param(0.4, 0.3, (True, USEFUL, 0.4), id="lower-threshold"),
        pytest.param(1.0, 1.0, (True, USEFUL, 1.0), id="threshold-1"),
        pytest.param(0.0, 0.0, (True, USEFUL, 0.0), id="threshold-0"),
    ],
)
def test_decide(p_useful: float, threshold: float, want: tuple[bool, str, float]):
    useful, label, confidence = decide(p_useful, threshold)
    assert (useful, label) == want[:2] and confidence == pytest.approx(want[2])


def test_answer_round_trips_through_json_with_probabilities_rounded():
    result = UtilityResult.decide(0.12345678, 0.5, TINY, filename="a.jpg")
    body = result.as_dict()
    assert body == {
        "filename": "a.jpg",
        "useful": False,
        "label": NON_USEFUL,
        "confidence": 0.876543,
        "p_useful": 0.123457,
        "threshold": 0.5,
        "model": {"name": "tiny", "version": "test-1", "task": "classification"},
    }
    assert UtilityResult.from_dict(body) == result
    assert "filename" not in UtilityResult.decide(0.9, 0.5, TINY).as_dict()


def test_item_error_round_trips():
    error = ItemError(400, "not a supported image", "bad.jpg")
    assert error.as_dict() == {"filename": "bad.jpg", "error": {"status": 400, "detail": "not a supported image"}}
    assert ItemError.from_dict(error.as_dict()) == error
