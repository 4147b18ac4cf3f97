"""Small helpers shared by the training steps: logging, seeding, atomic writes, provenance."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("training")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch): an epoch replays identically after --resume."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _writer() -> str:
    """This process as '<host>_<pid>': temporaries on a folder shared by machines (a Kubernetes or
    Slurm volume) are told apart, and only this host's dead writers are cleaned up."""
    host = re.sub(r"[^A-Za-z0-9]", "-", socket.gethostname()) or "host"
    return f"{host}_{os.getpid()}"


def temporary_beside(path: Path) -> Path:
    """A hidden temporary next to ``path``, named after its writer (see :func:`remove_stale_temporaries`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp.{_writer()}")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, then rename: a kill never leaves half a file."""
    tmp = temporary_beside(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete hidden temporaries left by this host's processes that no longer run; returns how many.
    Other hosts' temporaries are theirs to finish (names without a host are this host's)."""
    removed = 0
    here = _writer().rsplit("_", 1)[0]
    for tmp in folder.rglob(".*.tmp.*"):
        host, _, pid = tmp.name.rsplit(".", 1)[-1].rpartition("_")
        if pid.isdigit() and host in ("", here) and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_text(path: Path, text: str) -> None:
    tmp = temporary_beside(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def git_commit(repo: Path | None = None) -> str:
    """The current commit of the repository holding this package, '+dirty' if it has changes."""
    cwd = repo or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


_REPO = Path(__file__).resolve().parents[1]
_ABSOLUTE = re.compile(r"(?<![\w.:/~$])/(?:[\w.-]+/){2,}[\w.-]+")


def portable_paths(text: str) -> str:
    """``text`` (a card, a report) without this machine's absolute paths: the shared data as
    ``../shared/data/...``, the repo relative, any other folder as ``SCRATCH/<parent>/<name>``."""
    text = text.replace(str(_REPO.parent / "shared" / "data"), "../shared/data").replace(f"{_REPO}/", "")

    def scratch(match: re.Match[str]) -> str:
        parts = match.group(0).split("/")
        return f"SCRATCH/{'/'.join(parts[-2:])}" if Path("/", parts[1]).is_dir() else match.group(0)

    return _ABSOLUTE.sub(scratch, text)
