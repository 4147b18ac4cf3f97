"""Command-line mistakes: one line naming the argument, what was wrong and what is allowed, exit code 2.

Every ``image-utility`` command parses with :class:`Parser` and checks values with the helpers
here before it imports anything heavy (torch), so a mistake is answered at once, without a
traceback. ``app/cli.py`` turns a :class:`UsageError` into the line and the exit code.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

# The first module of an import that failed -> what to install (``pyproject.toml``'s extras).
EXTRAS = {
    "torch": "train",
    "torchvision": "train",
    "onnx": "train",
    "onnxscript": "train",
    "pandas": "train",
    "pyarrow": "train",
    "matplotlib": "train",
    "skimage": "train",
    "cv2": "train",
    "efficientnet_lite_pytorch": "train",
    "scipy": "eval",
    "sklearn": "eval",
    "pycocotools": "eval",
    "brisque": "eval",
    "svmutil": "eval",
    "libsvm": "eval",
    "onnxruntime": "serve",
    "fastapi": "serve",
    "uvicorn": "serve",
    "httpx": "serve",
}


class UsageError(ValueError):
    """A mistake on the command line or in a setting (exit code 2, one line, no traceback)."""


class Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing its usage block and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def missing_module_hint(exc: ModuleNotFoundError) -> str:
    """What to install for a module that could not be imported."""
    top = (exc.name or "").split(".")[0]
    if top == "facenet_pytorch":
        return "the mtcnn-face labeler needs facenet-pytorch: pip install --no-deps 'facenet-pytorch==2.6.0' requests"
    extra = EXTRAS.get(top)
    if extra is None:
        return f"module {top!r} is missing: reinstall image-utility (make train-env)"
    return f"module {top!r} is missing: pip install -e '.[{extra}]' (or: make train-env)"


def in_range(
    name: str, value: float | None, low: float | None = None, high: float | None = None, *, strict: bool = False
) -> None:
    """``value`` within [low, high] (or (low, high) when ``strict``); None passes."""
    if value is None:
        return
    below = low is not None and (value <= low if strict else value < low)
    above = high is not None and (value >= high if strict else value > high)
    if below or above:
        raise UsageError(f"{name} {value!r} is out of range; allowed: {_interval(low, high, strict)}")


def _interval(low: float | None, high: float | None, strict: bool) -> str:
    if high is None:
        return f"{'>' if strict else '>='} {low}"
    if low is None:
        return f"{'<' if strict else '<='} {high}"
    return f"{low} < x < {high}" if strict else f"{low} to {high}"


def existing(name: str, path: Path | None, what: str) -> None:
    """``path`` exists (None passes); else say what was expected there."""
    if path is not None and not path.exists():
        raise UsageError(f"{name} {str(path)!r}: no such file or folder; expected {what}")


def fresh_folder(name: str, path: Path, force: bool) -> None:
    """``path`` is absent or empty, unless ``force``: a report or model is never overwritten silently."""
    if force or not path.exists():
        return
    if not path.is_dir():
        raise UsageError(f"{name} {str(path)!r} is a file; expected a folder")
    if any(path.iterdir()):
        raise UsageError(f"{name} {str(path)!r} already holds files; choose another folder or pass --force")
