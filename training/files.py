"""Atomic files: every file the pipeline writes appears whole or not at all.

A writer writes a hidden temporary beside the target, named after itself (``<host>_<pid>``), then
renames it into place (``os.replace``). A run killed half-way leaves at most such temporaries;
readers ignore them and :func:`remove_stale_temporaries` deletes them once their writer is gone.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _writer() -> str:
    """This process as '<host>_<pid>': temporaries on a folder shared by machines (a Kubernetes or
    Slurm volume) are told apart, and only this host's dead writers are cleaned up."""
    host = re.sub(r"[^A-Za-z0-9]", "-", socket.gethostname()) or "host"
    return f"{host}_{os.getpid()}"


def temporary_beside(path: Path) -> Path:
    """A hidden temporary next to ``path``, named after its writer (see :func:`remove_stale_temporaries`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp.{_writer()}")


def save_atomic(path: Path, save: Callable[[Path], Any]) -> None:
    """``save(temporary)``, then rename the temporary to ``path``: a kill never leaves half a file."""
    tmp = temporary_beside(path)
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes | str, sync: bool = False) -> None:
    """Write ``data`` (text as UTF-8) atomically; ``sync`` flushes it to the disk before the rename."""
    raw = data.encode() if isinstance(data, str) else data

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(raw)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())

    save_atomic(path, write)


def write_json(path: Path, data: Any, sync: bool = False) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", sync)


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


def plain_args(args: object) -> dict[str, Any]:
    """An argparse namespace as plain values (paths as strings), for a checkpoint or JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return {k: plain(v) for k, v in vars(args).items()}
