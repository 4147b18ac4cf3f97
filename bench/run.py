"""``make bench``: model-only ceiling, decode cost, the service under load, the cap and the peers, int8.

    python -m bench.run [--models-dir models] [--seconds 8] [--rounds 2] [--out bench/results]
        [--skip-peers litserve mosec] [--skip-compare] [--skip-int8]

Everything runs in one process tree on 127.0.0.1 and stops by itself (about 12 minutes on
2 cores). Writes ``latest.json``, ``latest.md`` and ``latest.png`` into ``--out``. The test JPEGs
are made at run time in a temporary folder and never kept.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from app.settings import Settings
from bench import compare, decode, model_only, report, service
from bench.common import (
    REPO,
    ModelUnderTest,
    default_image_source,
    dump,
    exit_on_sigterm,
    loadavg,
    machine_info,
    make_jpegs,
    model_spec,
    onnx_precision,
    read_dir,
    real_batch,
    resolve_model,
    serve_dir,
)
from bench.peers import PEERS

log = logging.getLogger("bench")
CONCURRENCY = (1, 4, 16, 64)


def service_runs(model: ModelUnderTest, work: Path, dirs: dict[str, Path], args, sample) -> dict:
    """Our service at each concurrency on 224-px JPEGs, then the larger sizes at saturation.

    Model-only at batch 8 is measured right before and right after the concurrency-16 run, in the
    same process tree, so the acceptance ratio compares figures taken under the same machine load.
    """
    runs: list[dict] = []
    bracket: list[dict] = []
    with service.our_service(serve_dir(work, model.folder), {}, work / "service.log") as (base, pid):
        for c in CONCURRENCY:
            if c == 16:
                bracket.append(model_only.measure(model.onnx, sample, (8,), args.model_seconds)[0])
            r = service.measure(base, pid, dirs["224"], c, args.seconds)
            runs.append({"images": "224", "body": "raw", **r})
            log.info("service 224 c=%d: %.1f img/s p99 %.0f ms", c, r["throughput_rps"], r["p99_ms"])
            if c == 16:
                bracket.append(model_only.measure(model.onnx, sample, (8,), args.model_seconds)[0])
        for label in ("640x480", "1920x1080"):
            for c in (16, 64):
                r = service.measure(base, pid, dirs[label], c, args.seconds)
                runs.append({"images": label, "body": "raw", **r})
                log.info("service %s c=%d: %.1f img/s p99 %.0f ms", label, c, r["throughput_rps"], r["p99_ms"])
    return {"runs": runs, "model_only_b8_bracket": bracket}


def int8_section(model: ModelUnderTest, work: Path, payloads: dict, sample, args) -> dict:
    from bench.quant import quantize_folder

    out: dict = {"shipped_precision": model.precision}
    if model.precision == "int8":
        out["note"] = "the bundled model.onnx is already int8 (training shipped it); fp32 not measured here"
        return out
    t0 = time.perf_counter()
    calib = real_batch(payloads["224"], model_spec(model), 32)
    folder = quantize_folder(model.folder, work / "int8", calib)
    out["quantize_s"] = round(time.perf_counter() - t0, 1)
    out["recipe"] = "static QDQ, per-channel int8 weights, uint8 activations, MinMax on 32 bench photos"
    out["source"] = (
        "stand-in (speed only; random weights, accuracy meaningless)"
        if model.source == "stand-in"
        else ("bench re-quantisation of the bundled fp32 model (speed only; accuracy: see the model card)")
    )
    int8 = ModelUnderTest(folder.name, folder, model.source, model.size, onnx_precision(folder / "1" / "model.onnx"))
    one = model_only.measure(int8.onnx, sample, args.batch_sizes, args.model_seconds)
    par = model_only.measure_parallel(int8.onnx, sample, args.batch_sizes, args.model_seconds, Settings().cpu_count)
    out["model_only"] = model_only.best(one, par)
    runs = []
    with service.our_service(serve_dir(work, folder), {}, work / "service-int8.log") as (base, pid):
        for c in (16, 64):
            r = service.measure(base, pid, work / "img" / "224", c, args.seconds)
            runs.append({"images": "224", "body": "raw", **r})
            log.info("service int8 224 c=%d: %.1f img/s", c, r["throughput_rps"])
    out["service"] = runs
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", type=Path, default=REPO / "models")
    p.add_argument("--images", type=Path, default=None, help="folder of photos (default: shared imagenet-sample)")
    p.add_argument("--count", type=int, default=48, help="photos per size")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each load run")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(model_only.BATCH_SIZES))
    p.add_argument("--model-seconds", type=float, default=1.5, help="length of each model-only batch size")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--name", default="latest", help="basename of the result files")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of the cap and peer comparison")
    p.add_argument("--sweep-seconds", type=float, default=4.0, help="length of each peer sweep run")
    p.add_argument("--budget-s", type=float, default=1500.0, help="skip the comparison and int8 sections past this")
    p.add_argument("--skip-peers", nargs="*", default=[], choices=sorted(PEERS), help="peers left out")
    p.add_argument("--skip-compare", action="store_true", help="no cap or peer comparison")
    p.add_argument("--skip-int8", action="store_true")
    args = p.parse_args(argv)
    exit_on_sigterm()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "root"):  # per-request lines; onnxruntime.quantization logs on the root logger
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log.setLevel(logging.INFO)
    started = time.perf_counter()
    result: dict = {"machine": machine_info(), "loadavg": {"start": loadavg()}}
    settings = Settings()
    result["settings"] = {
        k: getattr(settings, k) for k in ("max_batch_size", "max_wait_ms", "intra_op_threads", "instances")
    } | {
        "decode_threads": settings.decode_threads,
        "cpu_instances": settings.inference_instances("CPUExecutionProvider"),
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        model = resolve_model(args.models_dir, work)
        spec = model_spec(model)
        result["model"] = model.as_dict()
        log.info("model %s (%s, %s, input %d)", model.name, model.source, model.precision, model.size)
        source = args.images or default_image_source()
        dirs = make_jpegs(source, work / "img", args.count)
        payloads = {label: read_dir(d) for label, d in dirs.items()}
        result["images"] = {
            "source": str(source) if source else "scikit-image sample photos",
            "per_size": {k: len(v) for k, v in payloads.items()},
            "note": "re-encoded at quality 90 by covering each size and centre-cropping; 640x480 and "
            "1920x1080 are upscaled from ~500x375 originals",
        }
        sample = real_batch(payloads["224"], spec, 16)

        log.info("model-only, batch sizes %s", args.batch_sizes)
        result["model_only_one_call"] = model_only.measure(model.onnx, sample, args.batch_sizes, args.model_seconds)
        result["model_only_parallel"] = model_only.measure_parallel(
            model.onnx, sample, args.batch_sizes, args.model_seconds, sessions=settings.cpu_count
        )
        result["model_only"] = model_only.best(result["model_only_one_call"], result["model_only_parallel"])
        result["decode"] = decode.measure(payloads, spec)
        result["loadavg"]["before_service"] = loadavg()
        result["service"] = service_runs(model, work, dirs, args, sample)
        result["loadavg"]["after_service"] = loadavg()
        over = time.perf_counter() - started > args.budget_s * 0.4
        if over:
            log.warning("over 40%% of the %.0f s budget: comparison and int8 skipped", args.budget_s)
        if not (args.skip_compare or over):
            result["compare"] = compare.run(model, work, dirs, settings.cpu_count, args)
            c1 = next(r for r in result["service"]["runs"] if r["images"] == "224" and r["concurrency"] == 1)
            result["compare_summary"] = compare.summary(result["compare"], result["model_only"], c1["p50_ms"])
        over = over or time.perf_counter() - started > args.budget_s * 0.8
        result["int8"] = None if args.skip_int8 or over else int8_section(model, work, payloads, sample, args)
        result["skipped_for_time"] = over
    result["gpu"] = {
        "measured": False,
        "note": "no GPU is lent to this task; the CUDA provider, IO binding and CUDA graphs were not measured",
    }
    result["loadavg"]["end"] = loadavg()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["ratios"] = report.ratios(result)
    args.out.mkdir(parents=True, exist_ok=True)
    dump(args.out / f"{args.name}.json", result)
    (args.out / f"{args.name}.md").write_text(report.markdown(result))
    report.plot(result, args.out / f"{args.name}.png")
    log.info("wrote %s (%.0f s)", args.out / f"{args.name}.json", result["wall_s"])
    sys.stdout.write(report.markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
