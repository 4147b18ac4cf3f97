"""The training commands' options: parsed and checked here, without torch, before a command imports it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from app.usage import UsageError, existing

# training.manifest.MANIFEST_NAMES, written out: importing that module would import pandas
MANIFEST_FILES = ("manifest.parquet", "manifest.csv")


def manifest_given(option: str, path: Path | None, what: str) -> None:
    """``path`` is a manifest file or a folder holding one (None passes); else a :class:`UsageError`."""
    existing(option, path, what)
    if path is not None and path.is_dir() and not any((path / n).is_file() for n in MANIFEST_FILES):
        raise UsageError(f"{option} {str(path)!r} holds no manifest.csv or manifest.parquet; expected {what}")


def explicit_flags(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The options actually given on the command line (``parser``'s defaults suppressed): on a resume,
    these override the checkpoint's saved arguments."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return {k for k, v in vars(parser.parse_args(argv)).items() if str(v) != argparse.SUPPRESS}


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX). Without it torch emulates
    bf16 autocast, measured ~15x *slower* than fp32 for ResNet-18 training on an AVX2-only EPYC."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def setup_logging(verbose: bool = False) -> None:
    """The log format of every training command (``-v``: debug messages too)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
