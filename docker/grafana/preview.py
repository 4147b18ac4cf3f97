"""Draw the Grafana dashboard's panels from a Prometheus, without Grafana: a picture for the docs.

    python docker/grafana/preview.py --prometheus http://127.0.0.1:9090 --minutes 5 --out docs/deploy-dashboard.png

Every panel of docker/grafana/dashboards/image-utility.json is placed on the dashboard's own 24-column grid
and its queries are run as Grafana runs them (model = All, $__rate_interval = --rate-interval): time series
with query_range, stats and tables with an instant query. Needs matplotlib (the train extra has it).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import httpx

DASHBOARD = Path(__file__).resolve().parent / "dashboards" / "image-utility.json"
ROW_PX, COLS = 0.42, 24  # inches per grid row; grid columns


def promql(expr: str, rate_interval: str) -> str:
    return expr.replace("$__rate_interval", rate_interval).replace('"$model"', '".*"')


def legend(fmt: str, metric: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt) or json.dumps(metric)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prometheus", default="http://127.0.0.1:9090")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate-interval", default="30s")
    p.add_argument("--out", type=Path, default=Path("dashboard.png"))
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dash = json.loads(DASHBOARD.read_text())
    end = time.time()
    start = end - args.minutes * 60
    rows = max(pn["gridPos"]["y"] + pn["gridPos"]["h"] for pn in dash["panels"])
    width, height = 16.0, rows * ROW_PX + 0.6
    fig = plt.figure(figsize=(width, height), facecolor="#111217")
    fig.text(0.01, 1 - 0.3 / height, dash["title"], color="white", fontsize=14, va="center", weight="bold")
    client = httpx.Client(base_url=args.prometheus, timeout=30)
    for panel in dash["panels"]:
        g = panel["gridPos"]
        pad = 0.035 if panel["type"] == "timeseries" else 0.006  # room for the y tick labels
        left, w = g["x"] / COLS + pad, g["w"] / COLS - pad - 0.008
        top = 1 - (0.6 + g["y"] * ROW_PX) / height
        h = g["h"] * ROW_PX / height - 0.045
        ax = fig.add_axes((left, top - h, w, h), facecolor="#181b1f")
        ax.set_title(panel["title"], color="#ccccdc", fontsize=9, loc="left")
        for side in ax.spines.values():
            side.set_color("#2c3235")
        ax.tick_params(colors="#8e8e8e", labelsize=7)
        if panel["type"] == "timeseries":
            for target in panel["targets"]:
                q = promql(target["expr"], args.rate_interval)
                params = {"query": q, "start": start, "end": end, "step": max(5, args.minutes * 60 / 240)}
                for series in client.get("/api/v1/query_range", params=params).json()["data"]["result"]:
                    xs = [(float(t) - end) / 60 for t, _ in series["values"]]
                    ys = [float(v) for _, v in series["values"]]
                    ax.plot(xs, ys, linewidth=1.2, label=legend(target.get("legendFormat", ""), series["metric"]))
            ax.set_xlabel("minutes", color="#8e8e8e", fontsize=7)
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            if unit:
                ax.set_ylabel(unit, color="#8e8e8e", fontsize=7)
            ax.grid(color="#2c3235", linewidth=0.5)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6, facecolor="#181b1f", labelcolor="#ccccdc", edgecolor="#2c3235", loc="upper left")
        else:
            ax.set_xticks([])
            ax.set_yticks([])
            lines = []
            for target in panel["targets"]:
                q = promql(target["expr"], args.rate_interval)
                for series in client.get("/api/v1/query", params={"query": q, "time": end}).json()["data"]["result"]:
                    value = float(series["value"][1])
                    if panel["type"] == "table":
                        lines.append("  ".join(f"{k}={v}" for k, v in sorted(series["metric"].items())))
                    elif panel.get("fieldConfig", {}).get("defaults", {}).get("unit") == "percentunit":
                        lines.append(f"{100 * value:.1f}%")
                    else:
                        lines.append(f"{value:.3g}")
            big = panel["type"] == "stat"
            style = {"color": "#73bf69", "fontsize": 20, "ha": "center"} if big else {"color": "#ccccdc", "fontsize": 8}
            text = "\n".join(lines) or "No data"
            ax.text(0.5 if big else 0.02, 0.45, text, va="center", transform=ax.transAxes, **style)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80, facecolor=fig.get_facecolor())
    print(f"wrote {args.out}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
