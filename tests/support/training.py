"""A tiny real label manifest: scikit-image photos JPEG-compressed at a few qualities.

Labels are set by rule (quality >= 50 -> useful, <= 10 -> non-useful): the point is the machinery.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
from PIL import Image
from skimage import data as skdata

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "cat")
TEST_PHOTOS = ("camera", "cat")
QUALITIES = (5, 10, 50, 90)


def _photo(name: str) -> Image.Image:
    img = Image.fromarray(getattr(skdata, name)())
    img = img.convert("RGB")
    img.thumbnail((160, 160))
    return img


def make_manifest(out_dir: Path, fmt: str = "csv") -> Path:
    """Write OUT_DIR/images/*.jpg, OUT_DIR/manifest.<fmt> and a summary.json; return OUT_DIR."""
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for name in PHOTOS:
        img = _photo(name)
        for q in QUALITIES:
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=q)
            rel = f"images/{name}_q{q}.jpg"
            (out_dir / rel).write_bytes(buf.getvalue())
            label = 1 if q >= 50 else 0
            rows.append(
                {
                    "source": name,
                    "image": rel,
                    "distortion": "jpeg",
                    "level": q,
                    "split": "test" if name in TEST_PHOTOS else "train",
                    "label": label,
                    "rule.label": label,
                }
            )
    # one dropped row (empty label), as the labeller writes for ambiguous images
    rows.append({**rows[0], "image": "images/astronaut_q5.jpg", "level": 30, "label": None, "rule.label": None})
    df = pd.DataFrame(rows)
    if fmt == "parquet":
        df.to_parquet(out_dir / "manifest.parquet")
    else:
        df.to_csv(out_dir / "manifest.csv", index=False)
    (out_dir / "summary.json").write_text(json.dumps({"rule": "quality >= 50 useful, <= 10 non-useful"}))
    return out_dir


def add_facts(out_dir: Path, labellers: tuple[str, ...] = ("net-a", "net-b")) -> Path:
    """Give the tiny manifest what ``image-utility label`` writes besides the label: the quality
    (``param``) and, per labeller, phi on the distorted image, phi' on the pristine one, valid."""
    file = out_dir / "manifest.csv"
    df = pd.read_csv(file)
    df["param"] = df["level"].where(df["level"] <= 95, 95)
    for k, name in enumerate(labellers):
        df[f"{name}.phi_ref"] = 0.8
        df[f"{name}.phi"] = (df["param"] / 100.0 * 0.8 - 0.05 * k).clip(0, 1)
        df[f"{name}.valid"] = True
    df.loc[0, f"{labellers[-1]}.valid"] = False
    df.to_csv(file, index=False)
    return out_dir
