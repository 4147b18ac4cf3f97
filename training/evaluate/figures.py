"""The report's PNG figures (matplotlib, Agg backend), each drawn from the results dict alone."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from training.metrics import defined

TITLES = {
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "brisque": "BRISQUE",
    "niqe": "NIQE",
    "energy": "energy E(x)",
    "jpeg_quality": "JPEG quality factor",
    "p_useful": "p_useful (ours)",
}


def fig1(res: dict, out: Path) -> str | None:
    """Histograms of each baseline for useful vs non-useful images, AUROC in the titles."""
    f1 = res.get("fig1")
    if not f1 or not f1.get("n"):
        return None
    names = [n for n in TITLES if any(v is not None for v in f1["samples"].get(n, []))]
    y = np.asarray(f1["labels"])
    cols = 4
    fig, axes = plt.subplots(int(np.ceil(len(names) / cols)), cols, figsize=(4 * cols, 3 * np.ceil(len(names) / cols)))
    for ax, name in zip(np.ravel(axes), names, strict=False):
        vals = np.array([np.nan if v is None else v for v in f1["samples"][name]], dtype=float)
        ok = np.isfinite(vals)
        bins = np.histogram_bin_edges(vals[ok], bins=25)
        ax.hist(vals[ok & (y == 1)], bins=bins, alpha=0.6, label="useful")
        ax.hist(vals[ok & (y == 0)], bins=bins, alpha=0.6, label="non-useful")
        auc = f1["auroc"][name]["auroc"]
        ax.set_title(f"{TITLES[name]}  AUROC {auc:.3f}" if defined(auc) else TITLES[name], fontsize=10)
    for ax in np.ravel(axes)[len(names) :]:
        ax.axis("off")
    np.ravel(axes)[0].legend(fontsize=8)
    fig.suptitle(f"Fig. 1 analog: {f1['n']} JPEG test images ({f1['n_useful']} useful)")
    fig.tight_layout()
    return _save(fig, out, "fig1_baselines.png")


def fig2(res: dict, out: Path) -> str | None:
    """Held-out network accuracy / mAP per JPEG level, unfiltered and with each filter."""
    it = res.get("intra_task", {})
    if not it.get("available"):
        return None
    metric = "accuracy" if res["task"] == "classification" else "mAP@[.5:.95]"
    fig, ax = plt.subplots(figsize=(7, 4))
    levels = list(it["unfiltered"]["levels"])
    xs = np.arange(len(levels))
    ax.plot(xs, [it["unfiltered"]["levels"][lv] for lv in levels], "k-o", label="no filter")
    for name, entry in it["filters"].items():
        ys = [np.nan if entry["levels"][lv] is None else entry["levels"][lv] for lv in levels]
        ax.plot(xs, ys, "-o", label=f"filter: {name}")
    ax.set_xticks(xs, levels)
    ax.set_xlabel("JPEG level (1 = mildest)")
    ax.set_ylabel(metric)
    ax.set_title(f"Fig. 2 analog: {it['network']} (not a labeler of the filter)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out, "fig2_intra_task.png")


def utility_by_level(res: dict, out: Path) -> str | None:
    """Eq. 2-3 continuous utility per distortion and level: median and inter-quartile band."""
    cu = res.get("continuous_utility", {})
    groups = dict(cu.get("distortions", {})) if cu.get("available") else {}
    for extra in res.get("continuous_utility_extra", {}).values():
        groups.update(extra.get("distortions", {}) if extra.get("available") else {})
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, d in groups.items():
        levels = list(d["levels"])
        q = np.array([d["levels"][lv]["p10_25_50_75_90"] for lv in levels])
        xs = np.array([int(float(lv)) for lv in levels])
        rho = d.get("spearman")
        ax.plot(xs, q[:, 2], "-o", label=f"{name} (Spearman with p_useful {rho:.2f})" if defined(rho) else name)
        ax.fill_between(xs, q[:, 1], q[:, 3], alpha=0.2)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("level (1 = mildest)")
    ax.set_ylabel("utility (eq. 3, mean of eq. 2 over labelers)")
    ax.set_title("Continuous utility: median and inter-quartile range per level", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out, "utility_by_level.png")


def beyond_jpeg(res: dict, out: Path) -> str | None:
    """Accuracy and balanced accuracy of the predictor per distortion."""
    bd = res.get("by_distortion", {})
    names = [n for n, d in bd.items() if d.get("n")]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(names)), 3.5))
    xs = np.arange(len(names))
    acc = [bd[n]["accuracy"] for n in names]
    bal = [bd[n]["balanced_accuracy"] or np.nan for n in names]
    ax.bar(xs - 0.2, acc, 0.4, label="accuracy")
    ax.bar(xs + 0.2, bal, 0.4, label="balanced accuracy")
    ax.set_xticks(xs, names, fontsize=8, rotation=15)
    ax.set_ylim(0, 1)
    ax.set_title("Predictor (trained on JPEG only) per distortion", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "beyond_jpeg.png")


def _save(fig: plt.Figure, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


ALL = (fig1, fig2, utility_by_level, beyond_jpeg)
