"""Ratios against the goals, a markdown table and a plot from one bench result."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import compare
from bench.model_only import interpolate
from bench.peers import PEERS


def _runs(result: dict, images: str, body: str = "raw") -> list[dict]:
    return [r for r in result["service"]["runs"] if r["images"] == images and r["body"] == body]


def _best(runs: list[dict]) -> dict | None:
    return max(runs, key=lambda r: r["throughput_rps"]) if runs else None


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def ratios(result: dict) -> dict:
    mo = result["model_only"]
    out: dict = {}
    sat = _best(_runs(result, "224"))
    at_batch = interpolate(mo, sat["batch_mean"] or 1)
    out["service_vs_model_only_same_batch"] = {
        "goal": ">= 0.9",
        "service_rps": sat["throughput_rps"],
        "concurrency": sat["concurrency"],
        "batch_mean": sat["batch_mean"],
        "model_only_rps_at_that_batch": round(at_batch, 2),
        "ratio": _r(sat["throughput_rps"] / at_batch),
        "per_concurrency": [
            {
                "concurrency": r["concurrency"],
                "batch_mean": r["batch_mean"],
                "ratio": _r(r["throughput_rps"] / interpolate(mo, r["batch_mean"] or 1)),
            }
            for r in _runs(result, "224")
        ],
    }
    # CPU-normalised: on a shared machine wall-clock throughput swings with other jobs; CPU seconds per
    # image swing much less. On a dedicated CPU-bound machine, throughput is cores / CPU per image.
    par = result.get("model_only_parallel") or []
    if par and "cpu_ms_per_image" in par[0]:
        cpu_mo = float(
            np.interp(sat["batch_mean"] or 1, [r["batch_size"] for r in par], [r["cpu_ms_per_image"] for r in par])
        )
        out["service_vs_model_only_same_batch"]["cpu_ratio"] = _r(cpu_mo / sat["server_cpu_ms_per_image"])
        out["service_vs_model_only_same_batch"]["cpu_ms_per_image"] = {
            "model_only": round(cpu_mo, 2),
            "server": sat["server_cpu_ms_per_image"],
            "server_plus_client": round(sat["server_cpu_ms_per_image"] + sat["client_cpu_ms_per_request"], 2),
        }
    c16 = next(r for r in _runs(result, "224") if r["concurrency"] == 16)
    bracket = result["service"]["model_only_b8_bracket"]
    b8 = sum(b["images_per_s"] for b in bracket) / len(bracket)
    out["acceptance_c16_vs_model_only_b8"] = {
        "service_c16_rps": c16["throughput_rps"],
        "model_only_b8_rps_before_after": [b["images_per_s"] for b in bracket],
        "ratio": _r(c16["throughput_rps"] / b8),
    }
    big = _best(_runs(result, "1920x1080"))
    mid = _best(_runs(result, "640x480"))
    out["1080p_vs_224"] = {
        "goal": ">= 0.8",
        "rps_224": sat["throughput_rps"],
        "rps_640x480": mid["throughput_rps"] if mid else None,
        "rps_1920x1080": big["throughput_rps"] if big else None,
        "ratio": _r(big["throughput_rps"] / sat["throughput_rps"]) if big else None,
        "ratio_640x480": _r(mid["throughput_rps"] / sat["throughput_rps"]) if mid else None,
    }
    if big:
        same_c = next(r for r in _runs(result, "224") if r["concurrency"] == big["concurrency"])
        out["1080p_vs_224"]["cpu_ratio"] = _r(same_c["server_cpu_ms_per_image"] / big["server_cpu_ms_per_image"])
        out["1080p_vs_224"]["server_cpu_ms_per_image"] = {
            "224": same_c["server_cpu_ms_per_image"],
            "1920x1080": big["server_cpu_ms_per_image"],
        }
    int8 = result.get("int8") or {}
    if int8.get("model_only"):
        fp = {r["batch_size"]: r["images_per_s"] for r in mo}
        out["int8_vs_fp32_model_only"] = {
            str(r["batch_size"]): _r(r["images_per_s"] / fp[r["batch_size"]], 2) for r in int8["model_only"]
        }
        if int8.get("service"):
            s = _best(int8["service"])
            out["int8_service_vs_int8_model_only_same_batch"] = _r(
                s["throughput_rps"] / interpolate(int8["model_only"], s["batch_mean"] or 1)
            )
    return out


def _by_thread(run: dict) -> str:
    split = run.get("server_cpu_ms_per_image_by_thread") or {}
    return ", ".join(f"{role} {ms}" for role, ms in split.items() if ms > 0) or "-"


def markdown(result: dict) -> str:
    m, model, ra = result["machine"], result["model"], result["ratios"]
    la = result["loadavg"]
    lines = [
        "# Benchmark results",
        "",
        f"- machine: {m['cpu']}, {m['cpus_usable']} usable CPUs, flags {', '.join(m['cpu_flags'])}; {m['platform']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}; commit {m['git_commit']}",
        f"- load average (1, 5, 15 min): start {la['start']}, before service {la.get('before_service')}, "
        f"end {la['end']} (the machine is shared: compare ratios taken in the same run); "
        f"bench niceness {m.get('niceness', 0)}",
        f"- model: `{model['name']}` ({model['source']}, {model['precision']}, input {model['size']} px, "
        f"{model['onnx_bytes'] / 1e6:.1f} MB)",
        f"- service settings: {result['settings']}",
        f"- run: {result['machine']['started']}, {result['wall_s']} s",
        "",
        "## Model only (onnxruntime, the ceiling)",
        "",
        "One call at a time on all cores (what a plain `InferenceSession` does), and one single-threaded call per "
        "core at once (the service's layout). The ceiling per batch size is the faster of the two. CPU ms/image "
        "counts every thread of the process (spin-waiting included).",
        "",
        "| batch | one call images/s | p50 ms | p99 ms | CPU ms/img | parallel images/s | p50 ms | p99 ms "
        "| CPU ms/img | ceiling |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    par = {r["batch_size"]: r for r in result.get("model_only_parallel", [])}
    for r in result.get("model_only_one_call", result["model_only"]):
        q = par.get(r["batch_size"], {})
        ceiling = next(c["images_per_s"] for c in result["model_only"] if c["batch_size"] == r["batch_size"])
        lines.append(
            f"| {r['batch_size']} | {r['images_per_s']} | {r['batch_p50_ms']} | {r['batch_p99_ms']} | "
            f"{r.get('cpu_ms_per_image')} | {q.get('images_per_s')} | {q.get('batch_p50_ms')} | "
            f"{q.get('batch_p99_ms')} | {q.get('cpu_ms_per_image')} | {ceiling} |"
        )
    lines += [
        "",
        "## Decode + preprocess per image (one thread, ms)",
        "",
        "| JPEG | kB | served (draft) p50 | p90 | decode only | full-res decode p50 | decode only | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['size']} | {r['kbytes_mean']} | {r['draft_ms_p50']} | {r['draft_ms_p90']} | "
        f"{r['draft_decode_only_ms_p50']} | {r['full_ms_p50']} | {r['full_decode_only_ms_p50']} | "
        f"{r['draft_speedup']} |"
        for r in result["decode"]
    ]
    lines += [
        "",
        "## Service under load (load generator in a second process, 127.0.0.1)",
        "",
        "Mean times per image (decode, queue) and per model call (inference) from the service's own histograms; "
        "CPU from /proc (server and client processes), and the server's CPU per image by thread role "
        "(`loop`: the event loop - HTTP, routing, batching; `decode`: decode + preprocess; "
        "`infer`: onnxruntime calls).",
        "",
        "| JPEG | body | conc. | images/s | p50 ms | p99 ms | batch mean | batches (<=size: calls) "
        "| decode ms | queue ms | inference ms | server CPU ms/img | by thread ms/img | client CPU ms/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in result["service"]["runs"]:
        errors = r["requests"] - r["ok"]
        lines.append(
            f"| {r['images']} | {r['body']} | {r['concurrency']} | {r['throughput_rps']} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['batch_mean']} | {r['batch_histogram_le']} | {r['decode_mean_ms']} | "
            f"{r['queue_mean_ms']} | {r['inference_mean_ms']} | {r['server_cpu_ms_per_image']} | "
            f"{_by_thread(r)} | {r['client_cpu_ms_per_request']} | {errors} |"
        )
    int8 = result.get("int8")
    if int8 and int8.get("model_only"):
        lines += ["", f"## int8 ({int8['source']}; {int8['recipe']})", ""]
        lines += ["| batch | int8 images/s | fp32 images/s | speed-up |", "|---:|---:|---:|---:|"]
        fp = {r["batch_size"]: r["images_per_s"] for r in result["model_only"]}
        lines += [
            f"| {r['batch_size']} | {r['images_per_s']} | {fp[r['batch_size']]} | "
            f"{ra['int8_vs_fp32_model_only'][str(r['batch_size'])]} |"
            for r in int8["model_only"]
        ]
        for s in int8.get("service", []):
            lines.append(
                f"\nService on the int8 model, 224 px, concurrency {s['concurrency']}: {s['throughput_rps']} images/s, "
                f"p99 {s['p99_ms']} ms, batch mean {s['batch_mean']}"
            )
    elif int8:
        lines += ["", f"## int8: {int8.get('note')}"]
    s1, acc, big = ra["service_vs_model_only_same_batch"], ra["acceptance_c16_vs_model_only_b8"], ra["1080p_vs_224"]
    lines += [
        "",
        "## Earlier ratios (against model-only alone; the goals are now against the cap, below)",
        "",
        "| ratio | figure | throughput ratio | CPU ratio |",
        "|---|---|---:|---:|",
        f"| service / model-only at the same batch size (224 px) | {s1['service_rps']} images/s at concurrency "
        f"{s1['concurrency']} (batch mean {s1['batch_mean']}) vs {s1['model_only_rps_at_that_batch']} "
        f"| {s1['ratio']} | {s1.get('cpu_ratio')} |",
        f"| service c=16 / model-only batch 8 | {acc['service_c16_rps']} vs "
        f"{acc['model_only_b8_rps_before_after']} (before, after) | {acc['ratio']} | |",
        f"| 1920x1080 / 224 px | {big['rps_1920x1080']} vs {big['rps_224']} images/s | {big['ratio']} "
        f"| {big.get('cpu_ratio')} |",
        "",
    ]
    if result.get("compare"):
        lines += compare.markdown(result["compare"], result["compare_summary"])
    lines += ["", f"GPU: {result['gpu']['note']}.", ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    mo = result["model_only"]
    a.plot([r["batch_size"] for r in mo], [r["images_per_s"] for r in mo], "o-", label="model only fp32")
    if result.get("int8") and result["int8"].get("model_only"):
        i8 = result["int8"]["model_only"]
        a.plot([r["batch_size"] for r in i8], [r["images_per_s"] for r in i8], "o-", label="model only int8")
    for label in ("224", "1920x1080"):
        runs = _runs(result, label)
        a.plot([r["batch_mean"] for r in runs], [r["throughput_rps"] for r in runs], "s--", label=f"service {label}")
    a.set_xscale("log", base=2)
    a.set_xlabel("batch size (service: mean batch seen)")
    a.set_ylabel("images/s")
    a.set_title("throughput")
    a.legend(fontsize=8)
    comp = result.get("compare")
    if comp:
        keys = [("service", "raw")] + [(n, "multipart" if PEERS[n].multipart else "raw") for n in comp["peers"]]
        keys += [("service", "multipart")] if any(PEERS[n].multipart for n in comp["peers"]) else []
        for who, body in keys:
            runs = [compare.median_run(comp["runs"], who, "224", body, c) for c in compare.CONCURRENCY]
            pts = [(c, r) for c, r in zip(compare.CONCURRENCY, runs, strict=True) if r]
            b.plot([r["throughput_rps"] for _, r in pts], [r["p99_ms"] for _, r in pts], "o-", label=f"{who} ({body})")
            for c, r in pts:
                b.annotate(str(c), (r["throughput_rps"], r["p99_ms"]), fontsize=7)
    b.set_xlabel("images/s (labels: concurrency)")
    b.set_ylabel("p99 ms")
    b.set_yscale("log")
    b.set_title("224-px JPEGs: ours and the peers (medians of the rounds)")
    b.legend(fontsize=8)
    fig.suptitle(f"{result['model']['name']} ({result['model']['source']}) on {result['machine']['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
