"""``python -m training.train.speed``: ResNet-18 training and inference images/s on this CPU.

Measures what the input size, channels-last and thread count cost before choosing them for a
real run (random inputs: decoding is cached once by ``train`` and does not count per epoch).
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
import torch.nn.functional as F

from training.options import setup_logging
from training.train.model import build_model

log = logging.getLogger("training.train.speed")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train.speed", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 160, 128, 112, 96])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=4, help="timed training steps per setting")
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    return p


def measure(size: int, channels_last: bool, batch_size: int, steps: int, bf16: bool = False) -> tuple[float, float]:
    """(training images/s, inference images/s) for one setting."""
    torch.manual_seed(0)
    model = build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x, y = torch.randn(batch_size, 3, size, size), torch.randint(0, 2, (batch_size,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.step()

    model.train()
    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    train_ips = batch_size * steps / (time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        model(x)
        t0 = time.perf_counter()
        for _ in range(steps):
            model(x)
        eval_ips = batch_size * steps / (time.perf_counter() - t0)
    return train_ips, eval_ips


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size in args.sizes:
            for channels_last in (False, True):
                train_ips, eval_ips = measure(size, channels_last, args.batch_size, args.steps)
                log.info(
                    "threads %d size %d channels_last %-5s train %.1f img/s, inference %.1f img/s",
                    threads,
                    size,
                    channels_last,
                    train_ips,
                    eval_ips,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
