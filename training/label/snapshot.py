"""A manifest of the sources labelled *so far* by a running ``image-utility label`` (evaluation fallback).

``python -m training.label.snapshot LABEL_OUT_DIR --out DIR`` reads the run's settings, its source
list and the part files already written, and writes ``DIR/manifest.csv`` (+ ``manifest.json``) with
the same columns, labels and train/test split the finished run will have (the split is drawn over
all sources up front), and absolute image paths. The label folder is only read.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from training.label.outdir import read_settings, read_sources
from training.label.parts import read_part
from training.label.rows import build_manifest
from training.manifest import manifest_meta, write_manifest
from training.options import setup_logging

log = logging.getLogger("training.label.snapshot")


def snapshot(label_dir: Path, out: Path) -> Path:
    settings = read_settings(label_dir)
    sources = read_sources(label_dir)
    parts = [p for p in (read_part(label_dir, s) for s, _ in sources) if p is not None]
    if not parts:
        raise SystemExit(f"{label_dir}: no source labelled yet")
    df = build_manifest(parts, dict(sources), settings)
    df["image"] = [str((label_dir / p).resolve()) for p in df["image"]]
    out.mkdir(parents=True, exist_ok=True)
    meta = manifest_meta(settings, len(df), len(parts))
    meta["snapshot_of"] = str(label_dir)
    meta["snapshot_sources"] = f"{len(parts)} of {len(sources)}"
    path = write_manifest(out, df, meta)
    log.info("%s: %d of %d sources labelled -> %s (%d rows)", label_dir, len(parts), len(sources), path, len(df))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.label.snapshot", description=__doc__.splitlines()[0])
    p.add_argument("label_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    setup_logging()
    snapshot(args.label_dir, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
