"""Numbers and tables as the cards, reports and summaries print them (Markdown).

An undefined number (None or NaN, see :mod:`training.metrics`) prints as ``n/a``.
"""

from __future__ import annotations

from typing import Any

from training.metrics import defined

NA = "n/a"


def pct(x: float | None, unit: str = " %") -> str:
    """A share as a percentage with one decimal: ``pct(0.5)`` is '50.0 %' (the card writes '50.0%')."""
    return f"{100 * x:.1f}{unit}" if defined(x) else NA


def num(x: float | None, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if defined(x) else NA


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """The lines of a Markdown table; a '|' inside a cell becomes '/'."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]


def confusion_table(m: dict[str, Any]) -> str:
    """The confusion matrix of :func:`training.metrics.binary_metrics` as a Markdown table."""
    (tn, fp), (fn, tp) = m["confusion"]
    return "\n".join(table(["true \\ predicted", "non-useful", "useful"], [["non-useful", tn, fp], ["useful", fn, tp]]))
