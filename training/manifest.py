"""The label manifest: the one file every stage after labelling reads, and how it is written.

A manifest is ``OUT_DIR/manifest.parquet`` or ``OUT_DIR/manifest.csv`` written by ``image-utility
label`` (docs/labels.md): a row per distorted image with at least ``source, image, distortion,
level, split`` and the combined ``label`` (1, 0, or empty when dropped), ``image`` relative to
OUT_DIR (or absolute). ``manifest.json`` beside it holds the labelling settings; every small JSON
file beside it is carried into the model card as it is. Any problem is a :class:`ManifestError`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.files import write_atomic

log = logging.getLogger(__name__)

NEEDED = ("source", "image", "distortion", "level", "split")
MANIFEST_NAMES = ("manifest.parquet", "manifest.csv")
UNLABELLED = -1  # label of a dropped row kept for its dense targets
LABELER_KEYS = ("labelers", "labeler", "networks", "models")


class ManifestError(ValueError):
    """The manifest is missing, unreadable or lacks required columns."""


def find_manifest(path: Path) -> Path:
    """A manifest file, or the manifest inside an OUT_DIR (parquet preferred)."""
    if path.is_file():
        return path
    for name in MANIFEST_NAMES:
        if (path / name).is_file():
            return path / name
    raise ManifestError(f"no {' or '.join(MANIFEST_NAMES)} in {path}")


def read_rows(path: Path, needed: tuple[str, ...] = NEEDED) -> tuple[Path, pd.DataFrame]:
    """(manifest file, all its rows) with ``path`` (the image file) resolved and ``split`` lower-case."""
    file = find_manifest(path)
    try:
        df = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file, low_memory=False)
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read {file}: {exc}") from exc
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ManifestError(f"{file} lacks columns {missing}; has {list(df.columns)}")
    df["split"] = df["split"].astype(str).str.strip().str.lower()
    df["path"] = [str(file.parent / p) for p in df["image"].astype(str)]  # an absolute image stays as it is
    return file, df


def label_columns(label_column: str) -> tuple[str, ...]:
    """The manifest columns a label column names: one, or several joined by ``+``."""
    return tuple(c.strip() for c in label_column.split("+"))


def label_values(df: pd.DataFrame, label_column: str) -> pd.Series:
    """The 1/0/NaN labels of ``label_column``; ``A+B`` is the unanimity of columns A and B (the paper's
    rule for combining labellers: 1 or 0 where all agree, dropped otherwise), e.g. the combined
    label of two labellers only, so that a third stays unseen (``efficientnet-lite0.u+efficientnet-lite1.u``)."""
    columns = [pd.to_numeric(df[c], errors="coerce") for c in label_columns(label_column)]
    if len(columns) == 1:
        return columns[0]
    stacked = pd.concat(columns, axis=1)
    agree = stacked.notna().all(axis=1) & stacked.nunique(axis=1).eq(1)
    return stacked.iloc[:, 0].where(agree)


def read_manifest(path: Path, label_column: str = "label", keep_unlabelled: bool = False) -> pd.DataFrame:
    """Rows with a 0/1 label in ``label_column`` (copied into ``label``; :func:`label_values`), with
    ``path`` resolved. ``keep_unlabelled`` keeps the dropped rows too, with label -1 (they still carry
    dense targets)."""
    file, df = read_rows(path, (*NEEDED, *label_columns(label_column)))
    labels = label_values(df, label_column)
    keep = labels.notna() | keep_unlabelled
    kept = df.loc[keep].copy()
    kept["label"] = labels[keep].fillna(UNLABELLED).astype(int)
    bad = sorted(set(kept["label"].unique()) - {0, 1, UNLABELLED})
    if bad:
        raise ManifestError(f"{file}: column {label_column!r} has values {bad}, expected 1, 0 or empty")
    log.info("%s: %d rows, %d labelled by %r", file, len(df), int((kept["label"] >= 0).sum()), label_column)
    return kept.reset_index(drop=True)


def read_manifests(paths: list[Path], label_column: str = "label", keep_unlabelled: bool = False) -> pd.DataFrame:
    """One manifest, or several joined: each keeps its own train/test split, and with more than one
    a ``collection`` column (the folder's name) prefixes each source so photos never collide.

    Folders of the same name are one collection (the same photos labelled apart, e.g. JPEG in one
    run and blur/noise in another): a photo must then sit in the same split in each.
    """
    if len(paths) == 1:
        return read_manifest(paths[0], label_column, keep_unlabelled)
    frames = []
    for path in paths:
        df = read_manifest(path, label_column, keep_unlabelled)
        name = find_manifest(path).parent.name
        df.insert(0, "collection", name)
        df["source"] = name + "/" + df["source"].astype(str)
        frames.append(df)
    joined = pd.concat(frames, ignore_index=True)
    splits = joined.loc[joined["split"] != "val"].groupby("source")["split"].nunique()
    if (splits > 1).any():
        raise ManifestError(
            f"{int((splits > 1).sum())} photos sit in different splits of folders with the same name "
            f"(first: {splits[splits > 1].index[0]}): label them with the same --seed and --test-fraction"
        )
    return joined


def side_files(path: Path, max_bytes: int = 1_000_000) -> dict[str, Any]:
    """Every small JSON file beside the manifest (labelling rule, thresholds, labelers), parsed."""
    root = find_manifest(path).parent
    found: dict[str, Any] = {}
    for file in sorted(root.glob("*.json")):
        if file.stat().st_size > max_bytes:
            continue
        try:
            found[file.name] = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", file, exc)
    return found


def find_labelers(side: dict[str, Any], columns: list[str]) -> list[str]:
    """The labelers named in a JSON file beside the manifest, else the prefixes of its per-labeler
    ``name.field`` columns."""
    for content in side.values():
        if isinstance(content, dict):
            for key in LABELER_KEYS:
                if content.get(key):
                    return content[key]
    return sorted({c.split(".")[0] for c in columns if "." in c})


@dataclass
class Manifest:
    """The rows of one split of a manifest (the evaluation's view): every column, labels numeric
    (NaN when dropped), ``path`` and ``pristine`` (the source photo, when its folder is known)."""

    path: Path
    rows: pd.DataFrame
    labelers: list[str]
    meta: dict

    @property
    def root(self) -> Path:
        return self.path.parent


def read_split(
    path: Path, split: str | None = "test", images_dir: Path | None = None, limit_sources: int = 0, seed: int = 0
) -> Manifest:
    """Rows of ``split`` (all rows with None, or if the manifest has no such split), ``limit_sources``
    sources at most (drawn with ``seed``); the pristine photos under ``images_dir``, by default the
    folder that ``manifest.json`` names."""
    file, df = read_rows(path)
    meta_file = file.with_suffix(".json")
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    if images_dir is None and meta.get("images_dir"):
        images_dir = Path(meta["images_dir"])
    rows = df[df["split"] == split] if split is not None and (df["split"] == split).any() else df
    if limit_sources:
        sources = sorted(rows["source"].unique())
        rng = np.random.default_rng(seed)
        keep = set(rng.choice(sources, size=min(limit_sources, len(sources)), replace=False))
        rows = rows[rows["source"].isin(keep)]
    rows = rows.copy().reset_index(drop=True)
    rows["pristine"] = [str(images_dir / s) if images_dir else "" for s in rows["source"]]
    for col in [c for c in rows.columns if c == "label" or c.endswith((".u", ".u_paper"))]:
        rows[col] = pd.to_numeric(rows[col], errors="coerce")
    log.info("%s: %d %s rows from %d sources", file, len(rows), split or "(all)", rows["source"].nunique())
    return Manifest(file, rows, find_labelers(side_files(file), list(df.columns)), meta)


def manifest_meta(settings: dict[str, Any], n_rows: int, n_sources: int) -> dict[str, Any]:
    """What the training export copies into the model card: how every label was made."""
    return {
        "columns": "see docs/labels.md",
        "rows": n_rows,
        "sources": n_sources,
        **{k: settings[k] for k in sorted(settings) if k != "images_dir"},
        "images_dir": str(settings["images_dir"]),
    }


def write_manifest(out_dir: Path, df: pd.DataFrame, meta: dict[str, Any], stem: str = "manifest") -> Path:
    """manifest.csv (and manifest.json with the settings), each written atomically; the CSV last."""
    write_atomic(out_dir / f"{stem}.json", json.dumps(meta, indent=2, sort_keys=True, default=str), sync=True)
    path = out_dir / f"{stem}.csv"
    write_atomic(path, df.to_csv(index=False), sync=True)
    return path
