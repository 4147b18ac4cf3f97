"""Every ``docs/...`` file a tracked file names exists (the Dockerfile once named a deploy page that was missing)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"(?<![\w/.])docs/[\w./-]+\.(?:md|png)")
TEXT = (".md", ".py", ".yaml", ".yml", ".toml", ".txt", ".pbtxt", "Dockerfile", "Makefile", ".conf")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / n for n in names if n.endswith(TEXT) and (ROOT / n).is_file()]


def test_every_referenced_doc_exists():
    missing = {
        f"{path.relative_to(ROOT)}: {ref}"
        for path in tracked_text_files()
        for ref in REFERENCE.findall(path.read_text(errors="replace"))
        if not (ROOT / ref).exists() and not (path.parent / ref).exists()
    }
    assert not missing, sorted(missing)
