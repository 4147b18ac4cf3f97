"""Where a record comes from: the commit that made it, and its text without this machine's paths.

No torch, no pandas: the benchmarks (``bench/``) record their commit with the same function.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_ABSOLUTE = re.compile(r"(?<![\w.:/~$])/(?:[\w.-]+/){2,}[\w.-]+")


def git_commit(repo: Path | None = None) -> str:
    """The current commit of ``repo`` (default: the repository holding this package), '+dirty' if it
    has changes to tracked files; 'unknown' outside a git checkout."""
    try:
        sha = _git(["rev-parse", "HEAD"], repo or REPO)
        dirty = _git(["status", "--porcelain", "--untracked-files=no"], repo or REPO)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def _git(args: list[str], cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10)
    return done.stdout.strip()


def portable_paths(text: str) -> str:
    """``text`` (a card, a report) without this machine's absolute paths: the shared data as
    ``../shared/data/...``, the repo relative, any other folder as ``SCRATCH/<parent>/<name>``."""
    text = text.replace(str(REPO.parent / "shared" / "data"), "../shared/data").replace(f"{REPO}/", "")

    def scratch(match: re.Match[str]) -> str:
        parts = match.group(0).split("/")
        return f"SCRATCH/{'/'.join(parts[-2:])}" if Path("/", parts[1]).is_dir() else match.group(0)

    return _ABSOLUTE.sub(scratch, text)
