"""report.md from an evaluation's results dict: the claims table first, then each experiment, with its figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.evaluate import figures
from training.evaluate.claims import claims
from training.evaluate.sections import sections
from training.markdown import table
from training.provenance import portable_paths


def write_report(res: dict[str, Any], out: Path) -> Path:
    """Figures and report.md into ``out``; returns the report's path."""
    drawn = {fn.__name__: fn(res, out) for fn in figures.ALL}
    lines = table(
        ["claim", "paper", "ours", "verdict"], [[c["claim"], c["paper"], c["ours"], c["verdict"]] for c in claims(res)]
    )
    lines += ["", f"# Utility evaluation: {res['model']['name']}", "", *sections(res, drawn)]
    path = out / "report.md"
    path.write_text(portable_paths("\n".join(lines) + "\n"))
    return path
