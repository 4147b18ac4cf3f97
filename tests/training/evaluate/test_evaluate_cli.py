"""``image-utility evaluate`` end to end on a tiny manifest and tiny ONNX models, and the report writer."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from support import BLUE, RED, image_bytes, make_tiny_model

from training.evaluate import cli as evaluate
from training.evaluate.claims import claims
from training.evaluate.report import write_report

HEADER = "| claim | paper | ours | verdict |"


def make_manifest(root: Path) -> Path:
    """6 sources (3 red = useful, 3 blue = non-useful), JPEG levels 1-2 and one blur level."""
    pristine = root / "pristine"
    pristine.mkdir(parents=True)
    out = root / "labels"
    rows = []
    for i in range(6):
        color = RED if i < 3 else BLUE
        useful = int(i < 3)
        source = f"n{i:08d}_src.JPEG"
        (pristine / source).write_bytes(image_bytes(color, size=(64, 48), quality=95))
        for distortion, level, fmt in (("jpeg", 1, "JPEG"), ("jpeg", 2, "JPEG"), ("blur", 1, "PNG")):
            rel = f"images/{distortion}/{level}/{source}.{fmt.lower()}"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(
                image_bytes(color, size=(64, 48), fmt=fmt, **({"quality": 40} if fmt == "JPEG" else {}))
            )
            row = {"source": source, "image": rel, "distortion": distortion, "level": level, "param": 40,
                   "split": "test", "label": useful, "utility": 0.3 if useful else -0.4 - 0.1 * level}  # fmt: skip
            for lab in ("lab0", "lab1"):
                row |= {f"{lab}.u": useful, f"{lab}.ref": i, f"{lab}.pred": i if useful or lab == "lab0" else 999,
                        f"{lab}.f": row["utility"], f"{lab}.valid": True}  # fmt: skip
            rows.append(row)
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    (out / "manifest.json").write_text(json.dumps({"images_dir": str(pristine)}))
    return out / "manifest.csv"


def test_evaluate_end_to_end(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    models = tmp_path / "models"
    make_tiny_model(models, "tiny-cls")
    make_tiny_model(models, "tiny-det", task="detection")
    out = tmp_path / "report"
    argv = ["--manifest", str(manifest), "--models-dir", str(models), "--model", "tiny-cls", "--out", str(out),
            "--other-model", "tiny-det", "--predictor", f"lab0.u={models / 'tiny-cls'}", "--holdout", "lab1",
            "--holdout-predictor", str(models / "tiny-cls"), "--energy-net", "", "--no-nr-iqa"]  # fmt: skip
    assert evaluate.main(argv) == 0
    report = (out / "report.md").read_text()
    assert report.splitlines()[0] == HEADER
    res = json.loads((out / "results.json").read_text())
    table1 = res["predictors"]
    assert table1[0]["accuracy"] == 1.0 and table1[0]["n"] == 12  # JPEG rows only
    assert table1[1]["column"] == "lab0.u" and table1[1]["auroc"] == 1.0
    assert res["fig1"]["auroc"]["p_useful"]["auroc"] == 1.0
    assert res["fig1"]["auroc"]["jpeg_quality"]["n"] == 12
    it = res["intra_task"]
    assert it["unfiltered"]["accuracy"] == 0.5  # lab1 is wrong on the blue images
    assert it["filters"]["classification (this model)"]["accuracy"] == 1.0
    assert res["by_distortion"]["blur"]["accuracy"] == 1.0
    assert res["continuous_utility"]["spearman_all"] > 0.8
    for png in ("fig1_baselines.png", "fig2_intra_task.png", "utility_by_level.png", "beyond_jpeg.png"):
        assert (out / png).stat().st_size > 1000
        assert f"]({png})" in report
    assert "image-utility evaluate --manifest" in report


def fake_results(acc: float, singles: list[float]) -> dict:
    preds = [{"labels": "combined (label)", "column": "label", "n": 10, "accuracy": acc, "balanced_accuracy": acc,
              "auroc": 0.9}]  # fmt: skip
    preds += [{"labels": f"net{i}", "column": f"net{i}.u", "n": 10, "accuracy": a, "balanced_accuracy": a, "auroc": 0.8}
              for i, a in enumerate(singles)]  # fmt: skip
    return {
        "task": "classification",
        "model": {"name": "m", "task": "classification", "version": "1", "input_size": [3, 8, 8], "training": {}},
        "manifest": "x.csv", "n_test_rows": 10, "n_test_sources": 2, "limit_sources": 0, "threshold": 0.5,
        "labelers": ["net0"], "distortions": ["jpeg"], "predictors": preds,
        "fig1": {"n": 0, "auroc": {"psnr": {"auroc": 0.7}, "p_useful": {"auroc": 0.9}}},
        "intra_task": {"available": True, "network": "net2", "n": 10, "threshold": 0.5,
                       "unfiltered": {"accuracy": 0.6, "levels": {"1": 0.6}},
                       "filters": {"classification (this model)": {"accuracy": 0.7, "kept": 0.8, "levels": {"1": 0.7}},
                                   "detection (d)": {"accuracy": 0.69, "kept": 0.8, "levels": {"1": 0.69}}}},
        "continuous_utility": {"available": False},
        "by_distortion": {},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("acc", "singles", "first", "second"),
    [
        pytest.param(0.95, [0.9, 0.91], "supported", "supported", id="reproduced"),
        pytest.param(0.70, [0.80], "not supported", "not supported", id="worse"),
        pytest.param(0.85, [], "partly", "not measured", id="no-singles"),
    ],
)
def test_claims_from_fake_results(acc: float, singles: list[float], first: str, second: str) -> None:
    rows = claims(fake_results(acc, singles))
    assert [r["verdict"] for r in rows[:2]] == [first, second]
    by_claim = {r["claim"].split(":")[0]: r for r in rows}
    assert by_claim["Fig. 2(a)"]["verdict"] == "supported"
    assert by_claim["Table III"]["verdict"] == "supported"  # 0.70 vs 0.69: 1.4 % apart
    assert by_claim["Table III"]["paper"].startswith("66.3 % vs 65.4 %")
    fig1 = [r for r in rows if r["claim"].startswith("Fig. 1")]
    assert [r["verdict"] for r in fig1] == ["supported", "supported"]  # psnr 0.7 < 0.8; p_useful 0.9 > 0.7


def test_combined_labels_at_the_singles_budget_decide_too() -> None:
    res = fake_results(0.95, [0.9])
    res["predictors"].append({"labels": "label", "column": "label", "n": 10, "balanced_accuracy": 0.85, "auroc": 0.8})
    row = claims(res)[1]
    assert row["verdict"] == "partly" and "at the singles' budget: 85.0 %" in row["ours"]
    assert "(net0)" in row["ours"]  # the 'label' row is never the best single labeler


def test_a_held_out_network_without_headroom_measures_nothing() -> None:
    res = fake_results(0.95, [0.9])
    res["intra_task"].update(unfiltered={"accuracy": 0.0, "levels": {}}, all_pristine={"accuracy": 0.0})
    by_claim = {r["claim"].split(":")[0]: r for r in claims(res)}
    assert by_claim["Fig. 2(a)"]["verdict"] == by_claim["Table III"]["verdict"] == "not measured"
    assert by_claim["Fig. 2(a)"]["ours"].startswith("no headroom: net2 scores 0.0 % distorted, 0.0 % all pristine")


def test_write_report_starts_with_claims_table(tmp_path: Path) -> None:
    path = write_report(fake_results(0.95, [0.9]), tmp_path)
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER and lines[1] == "|---|---|---|---|"
    assert (tmp_path / "fig2_intra_task.png").is_file()
