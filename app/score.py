"""``image-utility score PATH...``: score image files and folders offline, without HTTP.

Same engine (:class:`UtilityModel`) and preprocessing (:func:`preprocess_bytes`) as the service.
Files are streamed: a thread pool decodes the next batches while the model runs the current one,
so memory stays bounded by a few batches whatever the folder's size. Unreadable files become rows
with an ``error``; they never stop the run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import TextIO

import numpy as np
from tqdm import tqdm

from app.contract import find_model_dirs
from app.engine import UtilityModel
from app.osthreads import name_os_thread
from app.preprocess import ImageDecodeError, ImageTooLargeError, PreprocessSpec, preprocess_bytes
from app.registry import default_model_name
from app.settings import DEFAULT_PROVIDERS, Settings, cpu_count, parse_providers
from app.usage import Parser, UsageError
from app.verdict import NON_USEFUL, USEFUL, UtilityResult

log = logging.getLogger(__name__)
PREFETCH_BATCHES = 2  # batches decoding ahead of the one being predicted
COLUMNS = ("path", "useful", "label", "confidence", "p_useful", "threshold", "model", "model_version", "error")
FORMATS = (".jsonl", ".csv")


def get_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = Parser(
        prog="image-utility score",
        description="Score image files and folders (recursive) offline, with the service's engine.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files and folders")
    p.add_argument("--models-dir", default=env("UTILITY_MODELS_DIR", "models"), help="folder of model folders")
    p.add_argument("--model", default=env("UTILITY_DEFAULT_MODEL"), help="model name (default: first by name)")
    p.add_argument(
        "--threshold",
        type=float,
        help="useful when p_useful >= threshold (0..1; default: the model's, see GET /models)",
    )
    p.add_argument("--out", help="results file, .jsonl or .csv (default: JSON lines on stdout)")
    p.add_argument(
        "--providers",
        default=env("UTILITY_PROVIDERS", ",".join(DEFAULT_PROVIDERS)),
        help="onnxruntime execution providers, comma-separated, in order of preference",
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per model call")
    p.add_argument("--workers", type=int, default=0, help="decoding threads (default: one per core)")
    p.add_argument("--intra-op-threads", type=int, default=0, help="onnxruntime threads (default: one per core)")
    max_pixels = Settings.model_fields["max_pixels"].default
    p.add_argument("--max-pixels", type=int, default=max_pixels, help="refuse images larger than this")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and every file under folders (sorted; hidden entries skipped)."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                yield from (Path(root) / f for f in sorted(files) if not f.startswith("."))
        else:
            yield path


def _decode(path: Path, spec: PreprocessSpec, max_pixels: int) -> np.ndarray | str:
    """The network input, or the reason the file cannot be used."""
    try:
        return preprocess_bytes(path.read_bytes(), spec, max_pixels)
    except (ImageDecodeError, ImageTooLargeError) as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}"
    except Exception as exc:  # one odd file must not end the run; the row says what happened
        log.exception("unexpected error decoding %s", path)
        return f"{type(exc).__name__}: {exc}"


def _chunks(items: Iterable[Path], size: int) -> Iterator[list[Path]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class Scorer:
    """Decode in a thread pool, predict batch by batch, yield one row per file in input order."""

    def __init__(self, model: UtilityModel, threshold: float, workers: int, batch_size: int, max_pixels: int) -> None:
        self.model = model
        self.threshold = threshold
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.workers = workers

    def rows(self, files: Iterable[Path]) -> Iterator[dict]:
        spec = self.model.spec
        pending: deque[list[tuple[Path, Future]]] = deque()
        with ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="decode", initializer=name_os_thread
        ) as pool:
            for chunk in _chunks(files, self.batch_size):
                pending.append([(p, pool.submit(_decode, p, spec, self.max_pixels)) for p in chunk])
                if len(pending) > PREFETCH_BATCHES:
                    yield from self._finish(pending.popleft())
            while pending:
                yield from self._finish(pending.popleft())

    def _finish(self, batch: list[tuple[Path, Future]]) -> list[dict]:
        decoded = [(path, future.result()) for path, future in batch]
        inputs = [x for _, x in decoded if isinstance(x, np.ndarray)]
        probs = iter(self.model.predict(np.stack(inputs)).tolist() if inputs else [])
        return [self._row(path, x if isinstance(x, str) else next(probs)) for path, x in decoded]

    def _row(self, path: Path, result: float | str) -> dict:
        model = self.model
        row = dict.fromkeys(COLUMNS) | {"path": str(path), "threshold": self.threshold}
        row |= {"model": model.name, "model_version": model.version}
        if isinstance(result, str):
            return row | {"error": result}
        answer = UtilityResult.decide(result, self.threshold, model.info).as_dict()
        return row | {k: answer[k] for k in ("useful", "label", "confidence", "p_useful")}


def _check_args(args: argparse.Namespace) -> tuple[list[Path], list[str]]:
    if not args.paths:
        raise UsageError("no PATH given: name image files or folders to score")
    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise UsageError(f"--threshold must be between 0 and 1, got {args.threshold:g}")
    if args.out and args.out != "-" and Path(args.out).suffix.lower() not in FORMATS:
        raise UsageError(f"--out must end in {' or '.join(FORMATS)}, got {args.out!r}")
    if args.out and args.out != "-" and not Path(args.out).resolve().parent.is_dir():
        raise UsageError(f"--out: folder {Path(args.out).parent} does not exist")
    if args.batch_size < 1 or args.workers < 0 or args.intra_op_threads < 0 or args.max_pixels < 1:
        raise UsageError("--batch-size and --max-pixels must be >= 1, --workers and --intra-op-threads >= 0")
    try:
        return paths, parse_providers(args.providers)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def load_model(models_dir: Path, name: str | None, providers: list[str], intra_op_threads: int) -> UtilityModel:
    folders = {f.name: f for f in find_model_dirs(models_dir)}
    if not folders:
        raise UsageError(f"no model folders in {models_dir} (use --models-dir)")
    key = default_model_name(name, folders)
    if key not in folders:
        raise UsageError(f"model {key!r} not found in {models_dir} (found: {', '.join(sorted(folders))})")
    return UtilityModel(key, folders[key], providers, intra_op_threads)


class RowWriter:
    """One row per file, as JSON lines or CSV (empty cells for missing values)."""

    def __init__(self, stream: TextIO, fmt: str) -> None:
        self.stream = stream
        self._csv = csv.DictWriter(stream, fieldnames=COLUMNS) if fmt == ".csv" else None
        if self._csv:
            self._csv.writeheader()

    def write(self, row: dict) -> None:
        if self._csv:  # JSON's spelling of booleans, as in the .jsonl rows: true / false
            self._csv.writerow({k: str(v).lower() if isinstance(v, bool) else v for k, v in row.items()})
        else:
            self.stream.write(json.dumps(row) + "\n")


@contextlib.contextmanager
def open_writer(out: str | None) -> Iterator[RowWriter]:
    if not out or out == "-":
        yield RowWriter(sys.stdout, ".jsonl")
        sys.stdout.flush()
        return
    path = Path(out)
    with path.open("w", newline="", encoding="utf-8") as stream:
        yield RowWriter(stream, path.suffix.lower())


def summary(counts: Counter, seconds: float) -> str:
    total = sum(counts.values())
    readable = counts[USEFUL] + counts[NON_USEFUL]
    ratio = f"{counts[USEFUL] / readable:.1%}" if readable else "n/a"
    rate = total / seconds if seconds > 0 else 0.0
    return (
        f"scored {total} files in {seconds:.1f} s ({rate:.1f} images/s): {counts['useful']} useful, "
        f"{counts['non-useful']} non-useful, {counts['unreadable']} unreadable; useful ratio {ratio}"
    )


def run(args: argparse.Namespace, paths: list[Path], model: UtilityModel, writer: RowWriter) -> Counter:
    files = list(iter_files(paths))  # paths only: cheap, and it gives the progress bar its total
    workers = args.workers or cpu_count()
    threshold = model.default_threshold if args.threshold is None else args.threshold
    scorer = Scorer(model, threshold, workers, args.batch_size, args.max_pixels)
    counts: Counter = Counter({USEFUL: 0, NON_USEFUL: 0, "unreadable": 0})
    bar = tqdm(total=len(files), unit="img", file=sys.stderr, disable=args.no_progress, desc="scoring")
    with bar:
        for row in scorer.rows(files):
            writer.write(row)
            counts[row["label"] or "unreadable"] += 1
            bar.update()
    return counts


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = get_parser().parse_args(argv)
        paths, providers = _check_args(args)
        model = load_model(Path(args.models_dir), args.model, providers, args.intra_op_threads)
    except UsageError as exc:
        sys.stderr.write(f"image-utility score: {exc}\n")
        return 2
    except Exception as exc:  # a broken model folder: say which and why, no traceback
        sys.stderr.write(f"image-utility score: cannot load the model: {type(exc).__name__}: {exc}\n")
        return 1
    log.info("model %s version %s on %s", model.name, model.version, model.provider)
    start = time.perf_counter()
    with open_writer(args.out) as writer:
        counts = run(args, paths, model, writer)
    sys.stderr.write(summary(counts, time.perf_counter() - start) + "\n")
    return 0
