"""``python -m training.evaluate.scorecard``: the predictor's goals, measured per collection through the service engine.

For each labelled collection: AUROC and balanced accuracy on the held-out photos (combined labels,
the model's own default threshold and 0.5), within-level AUROC at JPEG levels 4-6, and how often
pristine photos and their quality-90 re-encodes are called useful. A collection named in
``--unseen`` is scored on all its rows (the model never trained on it: the cross-collection figure).
A model that reads the JPEG header's quality (``quality_map``) is scored a second time on the same
pixels sent as PNG, the figure for inputs whose file names no quality.

    python -m training.evaluate.scorecard --model models/utility-classification LABELS/imagenet-sample ... \
        --unseen LABELS/imagenet-val --out reports/utility-classification/scorecard
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.evaluate.baselines import jpeg_quality
from training.manifest import label_values, read_split
from training.metrics import NAN, auroc, binary_metrics, within_level_auroc
from training.options import setup_logging
from training.predict import load_model, predict_paths

log = logging.getLogger("training.evaluate.scorecard")
MID_LEVELS = ("jpeg/4", "jpeg/5", "jpeg/6")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.evaluate.scorecard", description=__doc__.splitlines()[0])
    p.add_argument("labels", type=Path, nargs="*", help="labelling OUT_DIRs scored on their test split")
    p.add_argument("--unseen", type=Path, action="append", default=[], help="OUT_DIR scored on all its rows")
    p.add_argument("--model", type=Path, required=True, help="model folder (models/<name>)")
    p.add_argument("--out", type=Path, required=True, help="folder for scorecard.json and scorecard.md")
    p.add_argument("--threshold", type=float, default=None, help="default: the model's own (else 0.5)")
    p.add_argument(
        "--label-column",
        action="append",
        default=None,
        help="the labels scored against (repeatable, one table each; default: label, the combined one): one "
        "labeller's (efficientnet-lite2.u) or A+B (unanimity); the predictions are made once",
    )
    return p


def useful_rate(rows: pd.DataFrame, p: np.ndarray, mask: np.ndarray, threshold: float) -> dict[str, Any]:
    return {"n": int(mask.sum()), "useful": float((p[mask] >= threshold).mean()) if mask.any() else NAN}


def header_quality(rows: pd.DataFrame) -> np.ndarray:
    """Each row's JPEG quality factor from its file's quantisation table (NaN without a JPEG header)."""
    return np.array([jpeg_quality(Path(f).read_bytes()) or np.nan for f in rows["path"]], dtype=np.float64)


def score(
    rows: pd.DataFrame,
    p: np.ndarray,
    threshold: float,
    hidden: np.ndarray | None = None,
    quality: np.ndarray | None = None,
) -> dict[str, Any]:
    label = pd.to_numeric(rows["label"], errors="coerce").to_numpy()
    lab = np.isfinite(label)
    y = label[lab].astype(int)
    dist = rows["distortion"].astype(str).to_numpy()
    jpeg = lab & np.isin(dist, ["jpeg", "jpeg-hq", "pristine"])
    within = within_level_auroc(rows.loc[lab].reset_index(drop=True), y, p[lab])
    mids = [within[k] for k in MID_LEVELS if k in within]
    out = {
        "rows": len(rows),
        "sources": int(rows["source"].nunique()),
        "at_threshold": binary_metrics(y, p[lab], threshold),
        "at_0.5": binary_metrics(y, p[lab], 0.5),
        "jpeg_family": binary_metrics(label[jpeg].astype(int), p[jpeg], threshold),
        "within_level_auroc": within,
        "within_level_auroc_4_6": float(np.mean(mids)) if mids else NAN,
        "pristine": useful_rate(rows, p, dist == "pristine", threshold),
        "quality_90": useful_rate(rows, p, (dist == "jpeg-hq") & (rows["level"].to_numpy() == 2), threshold),
    }
    quality = header_quality(rows) if quality is None else quality
    readable = jpeg & np.isfinite(quality)
    out["jpeg_quality_baseline"] = {
        "n": int(readable.sum()),
        "auroc": auroc(label[readable].astype(int), quality[readable]),
        "model_auroc_same_rows": auroc(label[readable].astype(int), p[readable]),
    }
    nine = lab & (dist == "jpeg")  # the paper's 9 levels only: the rows of the report's Table I and Fig. 1
    out["jpeg_9_levels"] = {
        **binary_metrics(label[nine].astype(int), p[nine], threshold),
        "jpeg_quality_auroc": auroc(label[nine & readable].astype(int), quality[nine & readable]),
    }
    beyond = {name: lab & (dist == name) for name in sorted(set(dist) - {"jpeg", "jpeg-hq", "pristine"})}
    # blur, noise, downscale, jpeg-reencode: where the header does not say how damaged the image is
    out["beyond_jpeg"] = {name: binary_metrics(label[m].astype(int), p[m], threshold) for name, m in beyond.items()}
    if hidden is not None:
        out["header_hidden"] = {
            "at_threshold": binary_metrics(y, hidden[lab], threshold),
            "jpeg_9_levels": binary_metrics(label[nine].astype(int), hidden[nine], threshold),
            "pristine": useful_rate(rows, hidden, dist == "pristine", threshold),
        }
    return out


def table(card: dict[str, Any]) -> str:
    head = "| collection | split | photos | AUROC | bal. acc. | bal. acc. @0.5 | within-level AUROC 4-6 "
    head += "| pristine useful | q90 useful | JPEG quality factor AUROC (model, same rows) "
    head += "| 9 JPEG levels: AUROC / bal. acc. (quality factor AUROC) |"
    lines = [head, "|" + "---|" * 11]
    for name, c in card["collections"].items():
        t = c["at_threshold"]
        lines.append(
            f"| {name} | {c['split']} | {c['sources']} | {t['auroc']:.3f} | {100 * t['balanced_accuracy']:.1f} % | "
            f"{100 * c['at_0.5']['balanced_accuracy']:.1f} % | {c['within_level_auroc_4_6']:.3f} | "
            f"{100 * c['pristine']['useful']:.1f} % ({c['pristine']['n']}) | "
            f"{100 * c['quality_90']['useful']:.1f} % ({c['quality_90']['n']}) | "
            f"{c['jpeg_quality_baseline']['auroc']:.3f} ({c['jpeg_quality_baseline']['model_auroc_same_rows']:.3f}) | "
            f"{c['jpeg_9_levels']['auroc']:.3f} / {100 * c['jpeg_9_levels']['balanced_accuracy']:.1f} % "
            f"({c['jpeg_9_levels']['jpeg_quality_auroc']:.3f}) |"
        )
    lines += beyond_table(card)
    hidden = [(n, c["header_hidden"]) for n, c in card["collections"].items() if "header_hidden" in c]
    if hidden:
        lines += ["", "The same pixels sent as PNG (no JPEG header, so no quality plane):", ""]
        lines += ["| collection | AUROC | bal. acc. | 9 JPEG levels: AUROC / bal. acc. | pristine useful |"]
        lines += ["|" + "---|" * 5]
        for name, h in hidden:
            t, nine = h["at_threshold"], h["jpeg_9_levels"]
            lines.append(
                f"| {name} | {t['auroc']:.3f} | {100 * t['balanced_accuracy']:.1f} % | {nine['auroc']:.3f} / "
                f"{100 * nine['balanced_accuracy']:.1f} % | {100 * h['pristine']['useful']:.1f} % |"
            )
    return "\n".join(lines) + "\n"


def beyond_table(card: dict[str, Any]) -> list[str]:
    """Distortions the JPEG header does not reveal: how often each is called useful against how often it is."""
    rows = [(n, d, m) for n, c in card["collections"].items() for d, m in c.get("beyond_jpeg", {}).items()]
    if not rows:
        return []
    title = "Beyond the JPEG header (blur, noise, downscale as PNG; `jpeg-reencode`: the 9 levels re-saved at q75-95):"
    lines = ["", title, ""]
    lines += ["| collection | distortion | rows | AUROC | bal. acc. | useful: labels / called |", "|" + "---|" * 6]
    for name, dist, m in rows:
        called = (m["confusion"][0][1] + m["confusion"][1][1]) / m["n"] if m["n"] else NAN
        lines.append(
            f"| {name} | {dist} | {m['n']} | {m['auroc']:.3f} | {100 * m['balanced_accuracy']:.1f} % | "
            f"{100 * m['n_useful'] / max(m['n'], 1):.1f} % / {100 * called:.1f} % |"
        )
    return lines


def run(args: argparse.Namespace) -> dict[str, Any]:
    model = load_model(args.model)
    threshold = args.threshold if args.threshold is not None else getattr(model.contract, "threshold", 0.5)
    columns = args.label_column or ["label"]
    card: dict[str, Any] = {"model": str(args.model), "version": model.version, "threshold": threshold}
    card["label_column"], card["by_label"] = columns[0], {c: {} for c in columns}
    scores: list[pd.DataFrame] = []
    for path, split in [(p, "test") for p in args.labels] + [(p, "all") for p in args.unseen]:
        m = read_split(path, "test" if split == "test" else None)
        p = predict_paths(model, list(m.rows["path"]), desc=path.name)
        hidden = None
        if model.spec.quality_map:
            hidden = predict_paths(model, list(m.rows["path"]), desc=f"{path.name} as PNG", hide_quality=True)
        name = path.name if path.is_dir() else f"{path.parent.name} ({path.stem})"
        if name in card["by_label"][columns[0]]:  # the same photos labelled apart (e.g. other/NAME): a row of its own
            name = f"{name} ({path.parent.name})"
        quality = header_quality(m.rows)  # read once, scored against every label column
        for column in columns:
            rows = m.rows.assign(label=label_values(m.rows, column))
            card["by_label"][column][name] = {"split": split, **score(rows, p, threshold, hidden, quality)}
        frame = pd.DataFrame({"collection": name, "image": m.rows["image"], "p_useful": p})
        if hidden is not None:
            frame["p_useful_as_png"] = hidden
        scores.append(frame)
        log.info("%s (%s): %s", name, split, card["by_label"][columns[0]][name]["at_threshold"])
    card["collections"] = card["by_label"][columns[0]]
    card["scores"] = pd.concat(scores, ignore_index=True) if scores else pd.DataFrame()
    return card


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    card = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    card.pop("scores").to_csv(args.out / "scores.csv.gz", index=False)  # p_useful per row, to recompute from
    (args.out / "scorecard.json").write_text(json.dumps(card, indent=1, sort_keys=True, default=float) + "\n")
    title = f"Model `{card['model']}` ({card['version']}), threshold {card['threshold']:.3f}\n\n"
    tables = [f"Labels `{c}`:\n\n" + table({"collections": cols}) for c, cols in card["by_label"].items()]
    (args.out / "scorecard.md").write_text(title + "\n".join(tables))
    log.info("wrote %s", args.out / "scorecard.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
