"""The output folder: its settings (run.json), its source list with splits (sources.tsv), the
final manifest and summary, and merging shard folders into one."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from training.files import save_atomic, write_atomic
from training.label.parts import part_path, read_part
from training.label.rows import build_manifest
from training.label.summary import summarize, to_json, to_markdown
from training.manifest import manifest_meta, write_manifest

logger = logging.getLogger(__name__)
RUN_FILE, SOURCES_FILE = "run.json", "sources.tsv"
LOCAL_KEYS = ("images_dir",)  # may differ between machines without changing any label


class OutDirError(RuntimeError):
    """The output folder belongs to another run, or is incomplete."""


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in settings.items() if k not in LOCAL_KEYS}, sort_keys=True))


def claim(out_dir: Path, settings: dict[str, Any], sources: list[tuple[str, str]]) -> None:
    """Record settings and sources in a new folder, or check that an existing one matches them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run_file = out_dir / RUN_FILE
    if run_file.is_file():
        old = json.loads(run_file.read_text())
        if _comparable(old) != _comparable(settings):
            diff = sorted(k for k in set(old) | set(settings) if k not in LOCAL_KEYS and old.get(k) != settings.get(k))
            raise OutDirError(f"{out_dir} was labelled with other settings ({', '.join(diff)}); use another --out")
        if read_sources(out_dir) != sources:
            raise OutDirError(f"{out_dir} was labelled from another list of sources; use another --out")
        return
    write_atomic(out_dir / SOURCES_FILE, "".join(f"{s}\t{split}\n" for s, split in sources), sync=True)
    write_atomic(run_file, json.dumps(settings, indent=2, sort_keys=True), sync=True)


def read_settings(out_dir: Path) -> dict[str, Any]:
    path = out_dir / RUN_FILE
    if not path.is_file():
        raise OutDirError(f"{out_dir} has no {RUN_FILE}: not an image-utility label output")
    return json.loads(path.read_text())


def read_sources(out_dir: Path) -> list[tuple[str, str]]:
    lines = (out_dir / SOURCES_FILE).read_text().splitlines()
    return [tuple(line.split("\t")) for line in lines if line]  # type: ignore[misc]


def finalize(out_dir: Path, settings: dict[str, Any], sources: list[tuple[str, str]], stem: str = "manifest") -> Path:
    """Assemble the manifest of ``sources`` from their parts, write it and the summary."""
    parts = []
    for source, _ in sources:
        part = read_part(out_dir, source)
        if part is None:
            raise OutDirError(f"{out_dir}: {source} is not labelled yet")
        parts.append(part)
    df = build_manifest(parts, dict(sources), settings)
    summary = summarize(df, settings["labelers"])
    text = to_markdown(summary, settings)
    write_atomic(out_dir / f"{stem}-summary.md" if stem != "manifest" else out_dir / "summary.md", text)
    name = f"{stem}-summary.json" if stem != "manifest" else "summary.json"
    write_atomic(out_dir / name, json.dumps(to_json(summary), indent=2, default=str))
    path = write_manifest(out_dir, df, manifest_meta(settings, len(df), len(parts)), stem)
    logger.info("summary\n%s", text)
    logger.info("wrote %s (%d rows, %d sources)", path, len(df), len(parts))
    return path


def _link_or_copy(src: Path, dst: Path) -> None:
    save_atomic(dst, lambda tmp: _link(src, tmp))


def _link(src: Path, tmp: Path) -> None:
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)


def _gather(shard_dir: Path, out_dir: Path, sources: list[tuple[str, str]]) -> int:
    """Bring a shard's finished sources (images first, then the part) into out_dir."""
    moved = 0
    for source, _ in sources:
        part = read_part(shard_dir, source)
        if part is None or part_path(out_dir, source).is_file():
            continue
        for row in part["rows"]:
            _link_or_copy(shard_dir / row["image"], out_dir / row["image"])
        _link_or_copy(part_path(shard_dir, source), part_path(out_dir, source))
        moved += 1
    return moved


def merge(shard_dirs: list[Path], out_dir: Path, partial: bool = False) -> Path:
    """Join shard outputs (separate folders, or one shared folder) into ``out_dir/manifest.csv``.

    ``partial``: while sources are still missing, write the ones finished so far as
    ``partial-<done>-of-<all>.csv`` instead of refusing (never as ``manifest.csv``)."""
    settings, sources = read_settings(shard_dirs[0]), read_sources(shard_dirs[0])
    for shard in shard_dirs[1:]:
        if _comparable(read_settings(shard)) != _comparable(settings) or read_sources(shard) != sources:
            raise OutDirError(f"{shard} and {shard_dirs[0]} were labelled with different settings or sources")
    claim(out_dir, settings, sources)
    for shard in shard_dirs:
        if shard.resolve() != out_dir.resolve():
            logger.info("merged %d sources from %s", _gather(shard, out_dir, sources), shard)
    missing = [s for s, _ in sources if not part_path(out_dir, s).is_file()]
    if missing and partial:
        done = [(s, v) for s, v in sources if part_path(out_dir, s).is_file()]
        logger.warning("%d of %d sources are in no shard yet: a partial manifest", len(missing), len(sources))
        return finalize(out_dir, settings, done, stem=f"partial-{len(done)}-of-{len(sources)}")
    if missing:
        raise OutDirError(
            f"{len(missing)} of {len(sources)} sources are in no shard yet (first: {missing[0]}); "
            "--partial writes the finished ones apart"
        )
    return finalize(out_dir, settings, sources)
