"""The end-of-run summary: labels per level, per-labeler utility rates, agreement between labelers."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pandas as pd

from training.markdown import table


def label_counts(df: pd.DataFrame, column: str = "label") -> pd.DataFrame:
    """Rows per (distortion, level, param) with the count of useful, non-useful and dropped."""
    names = df[column].map({1: "useful", 0: "non-useful"}).fillna("dropped")
    names[df["n_voters"] == 0] = "no reference"
    table = pd.crosstab([df["distortion"], df["level"], df["param"]], names)
    columns = ["useful", "non-useful", "dropped", "no reference"]
    for col in columns:
        if col not in table:
            table[col] = 0
    table = table[columns]
    labelled = table["useful"] + table["non-useful"]
    table["useful % of labelled"] = (100 * table["useful"] / labelled.where(labelled > 0)).round(1)
    return table


def labeler_levels(df: pd.DataFrame, labelers: list[str]) -> pd.DataFrame:
    """Per level, each labeler's useful / non-useful rows in % of the rows whose source counts for it."""
    keys = ["distortion", "level", "param"]
    table = df[keys].drop_duplicates().set_index(keys).sort_index()
    for name in labelers:
        valid = df[df[f"{name}.valid"].astype(bool)]
        grouped = valid.groupby(keys)[f"{name}.u"]
        table[f"{name} useful %"] = (100 * grouped.apply(lambda u: (u == 1).mean())).round(1)
        table[f"{name} non-useful %"] = (100 * grouped.apply(lambda u: (u == 0).mean())).round(1)
    return table


def labeler_rates(df: pd.DataFrame, labelers: list[str]) -> pd.DataFrame:
    """Per labeler: sources that count for it, and its share of useful / non-useful / dropped rows."""
    rows = []
    for name in labelers:
        valid = df[f"{name}.valid"].astype(bool)
        u = df.loc[valid, f"{name}.u"]
        n = max(len(u), 1)
        rows.append(
            {
                "labeler": name,
                "sources counted": int(df.loc[valid, "source"].nunique()),
                "rows": len(u),
                "useful %": round(100 * (u == 1).sum() / n, 1),
                "non-useful %": round(100 * (u == 0).sum() / n, 1),
                "dropped %": round(100 * u.isna().sum() / n, 1),
                "paper useful %": round(100 * (df.loc[valid, f"{name}.u_paper"] == 1).sum() / n, 1),
            }
        )
    return pd.DataFrame(rows).set_index("labeler")


def cohen_kappa(a: pd.Series, b: pd.Series) -> float | None:
    if len(a) == 0:
        return None
    observed = float((a == b).mean())
    expected = float((a == 1).mean() * (b == 1).mean() + (a == 0).mean() * (b == 0).mean())
    return None if expected >= 1.0 else round((observed - expected) / (1.0 - expected), 3)


def agreement(df: pd.DataFrame, labelers: list[str]) -> pd.DataFrame:
    """Pairwise, on rows both labelers labelled (source counts for both, neither dropped)."""
    rows = []
    for x, y in combinations(labelers, 2):
        both = df[f"{x}.u"].notna() & df[f"{y}.u"].notna()
        a, b = df.loc[both, f"{x}.u"].astype(int), df.loc[both, f"{y}.u"].astype(int)
        rows.append(
            {
                "pair": f"{x} / {y}",
                "rows": int(both.sum()),
                "agree %": round(100 * float((a == b).mean()), 1) if len(a) else None,
                "kappa": cohen_kappa(a, b),
            }
        )
    return pd.DataFrame(rows, columns=["pair", "rows", "agree %", "kappa"]).set_index("pair")


def summarize(df: pd.DataFrame, labelers: list[str]) -> dict[str, Any]:
    return {
        "rows": len(df),
        "sources": int(df["source"].nunique()),
        "labels": label_counts(df),
        "labels_paper": label_counts(df, "label_paper"),
        "labelers": labeler_rates(df, labelers),
        "labeler_levels": labeler_levels(df, labelers),
        "agreement": agreement(df, labelers),
        "split": df.drop_duplicates("source")["split"].value_counts().to_dict(),
    }


def markdown_table(frame: pd.DataFrame) -> str:
    """A table of this summary (its index as the first columns; an empty cell where a value is missing)."""
    flat = frame.reset_index()
    rows = [["" if pd.isna(v) else v for v in row] for row in flat.itertuples(index=False)]
    return "\n".join(table([str(c) for c in flat.columns], rows))


def to_markdown(summary: dict[str, Any], settings: dict[str, Any]) -> str:
    rule = settings["rule"]
    lines = [
        f"# Labels: {summary['rows']} images from {summary['sources']} sources",
        "",
        f"rule: {rule['name']} (r_H={rule['r_high']}, r_L={rule['r_low']}; paper T_H={rule['t_high']}, "
        f"T_L={rule['t_low']}; phi_rec={rule['phi_rec']}; detection conf>={rule['det_conf']}, "
        f"IoU>={rule['det_iou']}), combine: {settings['combine']}, quorum: {settings['quorum']}, "
        f"split (sources): {summary['split']}",
        "",
        *section(
            "Combined labels per level",
            summary["labels"],
            "'dropped': the labelers that count disagree or are in the band; 'no reference': no labeler counts.",
        ),
        *section("Combined labels per level under the paper's rule (T_H, T_L)", summary["labels_paper"]),
        *section("Per-labeler utility rates (rows whose source counts for the labeler)", summary["labelers"]),
        *section(
            "Per-labeler utility per level (% of the rows whose source counts for it; the rest is dropped)",
            summary["labeler_levels"],
        ),
        *agreement_section(summary["agreement"]),
    ]
    return "\n".join(lines)


def section(title: str, frame: pd.DataFrame, note: str | None = None) -> list[str]:
    """A titled table of the summary, with a sentence before it when ``note`` is given."""
    return [f"## {title}", "", *([note, ""] if note else []), markdown_table(frame), ""]


def agreement_section(table: pd.DataFrame) -> list[str]:
    """The labelers' agreement table; with one labeler (an empty table) a sentence saying so."""
    body = markdown_table(table) if len(table) else "One labeler only: there is no agreement to measure."
    return ["## Agreement between labelers", "", body, ""]


def to_json(summary: dict[str, Any]) -> dict[str, Any]:
    def table(t: pd.DataFrame) -> list[dict[str, Any]]:
        return t.reset_index().to_dict(orient="records")

    return {k: table(v) if isinstance(v, pd.DataFrame) else v for k, v in summary.items()}
