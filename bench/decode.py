"""Decode + preprocess cost per image, one thread, for real JPEGs at each size.

``draft`` is the served path (``app.preprocess.preprocess_bytes`` with the model's spec: libjpeg
decodes at 1/2, 1/4 or 1/8 scale in the DCT domain when the result still covers the input size);
``full`` is the same function with ``jpeg_draft=False`` (full-resolution decode), for comparison.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from app.preprocess import decode_image, preprocess_bytes


def _time(fn, payloads: list[bytes], seconds: float, min_rounds: int = 2) -> np.ndarray:
    for d in payloads[:2]:
        fn(d)
    times: list[float] = []
    start = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or time.perf_counter() - start < seconds:
        for d in payloads:
            t0 = time.perf_counter()
            fn(d)
            times.append(time.perf_counter() - t0)
        rounds += 1
    return np.array(times)


def measure(payloads_by_size: dict[str, list[bytes]], spec, seconds: float = 1.5) -> list[dict]:
    full_spec = dataclasses.replace(spec, jpeg_draft=False)
    rows = []
    for label, payloads in payloads_by_size.items():
        kbytes = round(np.mean([len(p) for p in payloads]) / 1e3)
        row: dict = {"size": label, "images": len(payloads), "kbytes_mean": kbytes}
        for name, s in (("draft", spec), ("full", full_spec)):
            t = _time(lambda d, s=s: preprocess_bytes(d, s), payloads, seconds)
            d = _time(lambda d, s=s: decode_image(d, s), payloads, seconds / 2)
            row[f"{name}_ms_p50"] = round(float(np.median(t)) * 1000, 3)
            row[f"{name}_ms_p90"] = round(float(np.percentile(t, 90)) * 1000, 3)
            row[f"{name}_decode_only_ms_p50"] = round(float(np.median(d)) * 1000, 3)
        row["draft_speedup"] = round(row["full_ms_p50"] / row["draft_ms_p50"], 2)
        rows.append(row)
    return rows
