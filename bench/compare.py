"""Ours against the cap the floor allows and against the peers, in alternating phases of one run.

Every server is started once and kept up; each round then drives them one after the other with
the same load generator, at concurrency 16 and 64: the floor (``bench.floor``'s bare ASGI app that
reads the body and runs the same ``preprocess_bytes``), our service, and each peer with its setting
chosen by its own sweep (``bench.peers``). Alternating rounds put every server under the same
machine load, so their ratios hold on a shared machine too; medians over the rounds are reported.
While one server is driven, the others are frozen (SIGSTOP): idle pollers and heartbeats would
otherwise take CPU from it. A peer that cannot be frozen (Ray: its cluster's health checks would
declare frozen nodes dead) runs its rounds alone after the others have stopped.

    cap = 1 / (1 / model-only + 1 / floor)   images/s

with model-only the fastest images/s measured (any batch size, either layout) and floor the bare
server's requests/s at the same concurrency: the most any Python server that decodes this way can
deliver here when the model and the decode share the cores.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import statistics
from pathlib import Path

from bench import floor, service
from bench.common import ModelUnderTest, model_spec, serve_dir
from bench.peers import PEERS, sweep

log = logging.getLogger("bench.compare")
CONCURRENCY = (16, 64)
KEEP = ("throughput_rps", "p50_ms", "p99_ms", "ok", "requests", "server_cpu_ms_per_image", "client_cpu_ms_per_request")


def phases(peers: list[str]) -> list[tuple[str, str, str]]:
    """One round: (server, images, body) in order; ours runs in each body a peer takes."""
    out = [("floor", "224", "raw"), ("service", "224", "raw")]
    for name in peers:
        body = "multipart" if PEERS[name].multipart else "raw"
        if body == "multipart":
            out.append(("service", "224", "multipart"))
        out.append((name, "224", body))
    return [*out, ("floor", "1920x1080", "raw"), ("service", "1920x1080", "raw")]


def _measure(who: str, base: str, pid: int, images: Path, c: int, seconds: float, body: str) -> dict:
    if who in PEERS:
        return PEERS[who].measure(base, pid, images, c, seconds)
    path = "/" if who == "floor" else "/utility"
    return service.measure(base, pid, images, c, seconds, "file" if body == "multipart" else None, path, metrics=False)


def run(model: ModelUnderTest, work: Path, dirs: dict[str, Path], cpus: int, args) -> dict:
    peers = [n for n in PEERS if n not in args.skip_peers and PEERS[n].available()]
    missing = [n for n in PEERS if n not in args.skip_peers and not PEERS[n].available()]
    sweeps = {n: sweep(PEERS[n], model.folder, dirs["224"], cpus, args.sweep_seconds, work) for n in peers}
    paused = [n for n in peers if PEERS[n].pausable]
    runs: list[dict] = []
    with contextlib.ExitStack() as stack:
        up = {
            "floor": stack.enter_context(floor._bare(model_spec(model).to_json(), work)),
            "service": stack.enter_context(service.our_service(serve_dir(work, model.folder), {}, work / "svc.log")),
        }
        for n in paused:
            up[n] = stack.enter_context(PEERS[n].server(model.folder, sweeps[n]["chosen"], work / f"{n}.log"))
        stack.callback(_only, up, None)  # all running again before they are stopped
        runs += _rounds(up, phases(paused), dirs, args)
    for n in (n for n in peers if not PEERS[n].pausable):  # alone, after the others have stopped
        with PEERS[n].server(model.folder, sweeps[n]["chosen"], work / f"{n}.log") as server:
            runs += _rounds({n: server}, [(n, "224", "raw")], dirs, args)
    return {"peers": peers, "peers_missing": missing, "sweeps": sweeps, "rounds": args.rounds, "runs": runs}


def _only(up: dict[str, tuple[str, int]], who: str | None) -> None:
    """Freeze every server but ``who`` (SIGSTOP to its process group; None: wake them all), so that
    no idle server's timers, pollers or heartbeats take CPU from the one under load."""
    for name, (_, pid) in up.items():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT if who is None or name == who else signal.SIGSTOP)


def _rounds(up: dict[str, tuple[str, int]], order: list[tuple[str, str, str]], dirs: dict[str, Path], args) -> list:
    runs = []
    for who, images, body in order:  # warm-up: first calls, thread pools, batch shapes
        _only(up, who)
        _measure(who, *up[who], dirs[images], 16, 1.0, body)
    for rnd in range(args.rounds):
        for c in CONCURRENCY:
            for who, images, body in order:
                _only(up, who)
                r = _measure(who, *up[who], dirs[images], c, args.seconds, body)
                row = {"round": rnd, "server": who, "images": images, "body": body, "concurrency": c}
                runs.append({**row, **{k: r[k] for k in KEEP}, "by_thread": r["server_cpu_ms_per_image_by_thread"]})
                log.info("%s %s %s c=%d: %.1f img/s p99 %.0f ms", who, images, body, c, *_rps_p99(r))
    return runs


def _rps_p99(r: dict) -> tuple[float, float]:
    return r["throughput_rps"], r["p99_ms"]


def median_run(runs: list[dict], server: str, images: str, body: str, c: int) -> dict | None:
    """The median over rounds of each figure (and of each thread role's CPU)."""
    sel = [r for r in runs if (r["server"], r["images"], r["body"], r["concurrency"]) == (server, images, body, c)]
    if not sel:
        return None
    out = {k: round(statistics.median(r[k] for r in sel), 2) for k in KEEP}
    roles = {role for r in sel for role in r["by_thread"]}
    out["by_thread"] = {role: round(statistics.median(r["by_thread"].get(role, 0.0) for r in sel), 2) for role in roles}
    out["errors"] = sum(r["requests"] - r["ok"] for r in sel)
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def summary(section: dict, model_only: list[dict], single_request_ms: float | None) -> dict:
    """The goals: ours / cap, ours / each peer (with the p99 ratio), p99 at 16 against one request alone."""
    best = max(model_only, key=lambda r: r["images_per_s"])
    mo = best["images_per_s"]
    runs, out = section["runs"], {"model_only": {"images_per_s": mo, "batch_size": best["batch_size"]}, "rows": []}
    for images in ("224", "1920x1080"):
        for c in CONCURRENCY:
            fl, ours = median_run(runs, "floor", images, "raw", c), median_run(runs, "service", images, "raw", c)
            if not fl or not ours:
                continue
            cap = 1.0 / (1.0 / mo + 1.0 / fl["throughput_rps"])
            non_model = {k: v for k, v in ours["by_thread"].items() if k != "infer"}
            row = {"images": images, "concurrency": c, "floor": fl, "service": ours, "cap_rps": round(cap, 1)}
            row |= {"ratio_to_cap": _ratio(ours["throughput_rps"], cap), "service_non_model_cpu": non_model}
            if images == "224":
                row["peers"] = _peer_rows(runs, section["peers"], c)
            out["rows"].append(row)
    c16 = median_run(runs, "service", "224", "raw", 16)
    out["p99_c16_over_single_request"] = _ratio(c16["p99_ms"] if c16 else None, single_request_ms)
    out["single_request_p50_ms"] = single_request_ms
    return out


def _peer_rows(runs: list[dict], peers: list[str], c: int) -> dict:
    rows = {}
    for name in peers:
        body = "multipart" if PEERS[name].multipart else "raw"
        ours, peer = median_run(runs, "service", "224", body, c), median_run(runs, name, "224", body, c)
        rows[name] = {
            "body": body,
            "ours": ours,
            "peer": peer,
            "throughput_ratio": _ratio(ours["throughput_rps"], peer["throughput_rps"]),
            "p99_ratio": _ratio(ours["p99_ms"], peer["p99_ms"]),
            "cpu_ratio": _ratio(peer["server_cpu_ms_per_image"], ours["server_cpu_ms_per_image"]),
        }
    return rows


GOALS = (("224", 0.9), ("1920x1080", 0.85))
PEER_GOALS = {"litserve": 1.3, "mosec": 1.0}  # Ray Serve: measured beside them, no goal


def _roles(by_thread: dict[str, float]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(by_thread.items()) if v > 0) or "-"


def markdown(section: dict, s: dict) -> list[str]:
    mo = s["model_only"]
    lines = [
        "## Against the cap and the peers (alternating phases)",
        "",
        f"{section['rounds']} rounds, medians; every server up the whole time and driven in turn by the same load "
        f"generator. cap = 1 / (1 / model-only + 1 / floor), model-only {mo['images_per_s']} images/s "
        f"(batch {mo['batch_size']}, its fastest layout); floor: the bare ASGI app that reads the body and runs the "
        "same decode.",
        "",
        "| JPEG | conc. | floor req/s | cap images/s | ours images/s | ours / cap | ours p99 ms | floor CPU ms/img "
        "(by thread) | ours non-model CPU ms/img (by thread) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in s["rows"]:
        fl, ours = r["floor"], r["service"]
        non_model = round(sum(r["service_non_model_cpu"].values()), 2)
        lines.append(
            f"| {r['images']} | {r['concurrency']} | {fl['throughput_rps']} | {r['cap_rps']} | "
            f"{ours['throughput_rps']} | **{r['ratio_to_cap']}** | {ours['p99_ms']} | "
            f"{fl['server_cpu_ms_per_image']} ({_roles(fl['by_thread'])}) | {non_model} "
            f"({_roles(r['service_non_model_cpu'])}) |"
        )
    peers = section["peers"]
    if peers:
        lines += [
            "",
            "| peer | body | conc. | ours images/s | peer images/s | ratio | ours p99 ms | peer p99 ms | "
            "p99 ratio | CPU ms/img ours / peer |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in (r for r in s["rows"] if "peers" in r):
            for name, p in r["peers"].items():
                lines.append(
                    f"| {name} | {p['body']} | {r['concurrency']} | {p['ours']['throughput_rps']} | "
                    f"{p['peer']['throughput_rps']} | **{p['throughput_ratio']}** | {p['ours']['p99_ms']} | "
                    f"{p['peer']['p99_ms']} | {p['p99_ratio']} | {p['ours']['server_cpu_ms_per_image']} / "
                    f"{p['peer']['server_cpu_ms_per_image']} |"
                )
        lines += ["", "Each peer's setting, chosen by its sweep (concurrency 64, the fastest without errors):", ""]
        for name, sw in section["sweeps"].items():
            tried = "; ".join(f"{t['config']}: {t['throughput_rps']}/s p99 {t['p99_ms']} ms" for t in sw["tried"])
            lines.append(f"- {name}: chosen {sw['chosen']}. Tried: {tried}")
    if section["peers_missing"]:
        lines += [
            "",
            f"Not installed, skipped: {', '.join(section['peers_missing'])} (`make bench` installs LitServe and "
            'mosec; Ray Serve: `pip install --target DIR "ray[serve]"`, then `BENCH_ALT_PATH=DIR`).',
        ]
    return [*lines, "", *goals(s)]


def goals(s: dict) -> list[str]:
    lines = ["## Goals", "", "| goal | measured | met |", "|---|---|---|"]
    for images, goal in GOALS:
        rows = [r for r in s["rows"] if r["images"] == images]
        figs = ", ".join(f"c={r['concurrency']}: {r['ratio_to_cap']}" for r in rows)
        met = bool(rows) and all((r["ratio_to_cap"] or 0) >= goal for r in rows)
        lines.append(f"| ours >= {goal}x the cap, {images} JPEGs, c=16 and 64 | {figs} | {'yes' if met else 'no'} |")
    for name, goal in PEER_GOALS.items():
        rows = [(r["concurrency"], r["peers"][name]) for r in s["rows"] if name in r.get("peers", {})]
        if not rows:
            lines.append(f"| >= {goal}x {name} at equal or better p99 | not measured | - |")
            continue
        figs = ", ".join(f"c={c}: {p['throughput_ratio']}x, p99 x{p['p99_ratio']}" for c, p in rows)
        met = all((p["throughput_ratio"] or 0) >= goal and (p["p99_ratio"] or 9) <= 1.0 for _, p in rows)
        lines.append(f"| >= {goal}x {name} throughput at equal or better p99 | {figs} | {'yes' if met else 'no'} |")
    ratio = s["p99_c16_over_single_request"]
    lines.append(
        f"| p99 at c=16 within 3x one request alone (c=1 p50 {s['single_request_p50_ms']} ms) | {ratio}x | "
        f"{'yes' if ratio is not None and ratio <= 3 else 'no'} |"
    )
    return lines
