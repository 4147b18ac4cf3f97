"""Choose the batching settings from measurements: the service under several UTILITY_* settings.

    python -m bench.sweep [--rounds 2] [--seconds 6] [--concurrency 16 64] [--config NAME:KEY=V,KEY=V ...]

Each round runs every configuration once, in the same order (A B C A B C), so slow drift in the
machine's load hits them alike; model-only at batch 8 is measured right before each service run
and every throughput is also given as a ratio to it. Writes ``sweep.json`` and ``sweep.md``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import model_only, service
from bench.common import (
    REPO,
    default_image_source,
    dump,
    exit_on_sigterm,
    loadavg,
    machine_info,
    make_jpegs,
    model_spec,
    read_dir,
    real_batch,
    serve_dir,
)
from bench.common import resolve_model as _resolve

log = logging.getLogger("bench.sweep")

DEFAULT_CONFIGS = {
    "default": {},
    "1thread-x2": {"UTILITY_INTRA_OP_THREADS": "1", "UTILITY_INSTANCES": "2"},
    "2threads-x2": {"UTILITY_INTRA_OP_THREADS": "2", "UTILITY_INSTANCES": "2"},
    "batch8": {"UTILITY_MAX_BATCH_SIZE": "8"},
    "batch32": {"UTILITY_MAX_BATCH_SIZE": "32"},
    "wait0": {"UTILITY_MAX_WAIT_MS": "0"},
    "wait10": {"UTILITY_MAX_WAIT_MS": "10"},
    "decode1": {"UTILITY_DECODE_WORKERS": "1"},
}


def parse_config(text: str) -> tuple[str, dict[str, str]]:
    name, _, rest = text.partition(":")
    pairs = [kv.split("=", 1) for kv in rest.split(",") if kv]
    return name, {(k if k.startswith("UTILITY_") else "UTILITY_" + k.upper()): v for k, v in pairs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", type=Path, default=REPO / "models")
    p.add_argument("--config", nargs="*", help="NAME:KEY=V,KEY=V (default: a built-in set)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    p.add_argument("--images", default="224", choices=("224", "640x480", "1920x1080"))
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--name", default="sweep")
    args = p.parse_args(argv)
    exit_on_sigterm()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    configs = dict(parse_config(c) for c in args.config) if args.config else DEFAULT_CONFIGS
    out: dict = {"machine": machine_info(), "loadavg_start": loadavg(), "configs": configs, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        model = _resolve(args.models_dir, work)
        out["model"] = model.as_dict()
        dirs = make_jpegs(default_image_source(), work / "img", 48)
        sample = real_batch(read_dir(dirs["224"]), model_spec(model), 16)
        for rnd in range(args.rounds):
            for name, env in configs.items():
                mo = model_only.measure(model.onnx, sample, (8,), 1.5)[0]["images_per_s"]
                with service.our_service(serve_dir(work, model.folder), env, work / "sweep.log") as (base, pid):
                    for c in args.concurrency:
                        r = service.measure(base, pid, dirs[args.images], c, args.seconds)
                        row = {"config": name, "round": rnd, "model_only_b8": mo, "load": loadavg()[0], **r}
                        row["ratio_to_b8"] = round(r["throughput_rps"] / mo, 3)
                        out["runs"].append(row)
                        dump(args.out / f"{args.name}.partial.json", out)  # kept if the sweep is stopped
                        log.info(
                            "%s c=%d: %.1f img/s (x%.2f of model-only b8 %.1f) p99 %.0f ms batch %.1f",
                            name, c, r["throughput_rps"], row["ratio_to_b8"], mo, r["p99_ms"], r["batch_mean"] or 0,
                        )  # fmt: skip
    out["loadavg_end"] = loadavg()
    out["summary"] = summarize(out["runs"])
    dump(args.out / f"{args.name}.json", out)
    (args.out / f"{args.name}.md").write_text(markdown(out))
    sys.stdout.write(markdown(out))
    return 0


def summarize(runs: list[dict]) -> list[dict]:
    keys = sorted({(r["config"], r["concurrency"]) for r in runs}, key=lambda k: (k[1], k[0]))
    rows = []
    for name, c in keys:
        rs = [r for r in runs if r["config"] == name and r["concurrency"] == c]
        rows.append(
            {
                "config": name,
                "concurrency": c,
                "runs": len(rs),
                "rps_median": round(statistics.median(r["throughput_rps"] for r in rs), 2),
                "ratio_to_b8_median": round(statistics.median(r["ratio_to_b8"] for r in rs), 3),
                "p99_ms_median": round(statistics.median(r["p99_ms"] for r in rs), 1),
                "batch_mean": round(statistics.median(r["batch_mean"] or 0 for r in rs), 2),
                "server_cpu_ms_per_image": round(statistics.median(r["server_cpu_ms_per_image"] for r in rs), 1),
            }
        )
    return rows


def markdown(out: dict) -> str:
    lines = [
        f"# Settings sweep ({out['model']['name']}, {out['model']['source']}, {out['model']['precision']})",
        "",
        f"{out['machine']['cpu']}, {out['machine']['cpus_usable']} CPUs; load average {out['loadavg_start']} -> "
        f"{out['loadavg_end']}; {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        "| config | settings | conc. | runs | images/s (median) | x model-only b8 | p99 ms | batch mean "
        "| server CPU ms/img |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["summary"]:
        env = out["configs"][r["config"]]
        settings = ", ".join(f"{k.removeprefix('UTILITY_').lower()}={v}" for k, v in env.items()) or "defaults"
        lines.append(
            f"| {r['config']} | {settings} | {r['concurrency']} | {r['runs']} | {r['rps_median']} | "
            f"{r['ratio_to_b8_median']} | {r['p99_ms_median']} | {r['batch_mean']} | {r['server_cpu_ms_per_image']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
