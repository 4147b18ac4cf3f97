"""`image-utility train` under torchrun (DDP on CPU, gloo, loopback rendezvous), against one process.

Real processes on the tiny manifest (size 32, global batch 8) with the recipe that has every moving part:
two views, the quality plane (and its dropout), dense soft targets, augmented copies of the minority class.
The pieces that make N processes one global batch (shares, augmentation draws, loss scaling) are checked
exactly in-process first; the runs then differ from one process only through BatchNorm normalising each
rank's share with that share's statistics (torch's SyncBatchNorm runs on GPUs only) and float summation
order, which is what TOLERANCE covers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from support.training import add_facts, make_manifest

from training.train import cli as train
from training.train import distributed
from training.train.epoch import (
    apply_augment,
    apply_hide,
    augment,
    augment_draws,
    batch_loss,
    hide_draws,
    hide_quality,
)
from training.train.model import build_model

REPO = Path(__file__).resolve().parents[3]
RECIPE = ["--size", "32", "--batch-size", "8", "--native-crop", "--quality-map", "--aux", "--balance", "augment"]
RECIPE += ["--lr", "0.002", "--schedule", "constant", "--threads", "1", "--seed", "3"]
# Per-epoch train loss, 2 processes vs 1: BatchNorm on 4-row shares instead of the 8-row batch is the
# difference (at 32 px the last stage's maps are 1x1, so its statistics come from 4 values per channel).
TOLERANCE = 0.10  # relative; measured here -2.2 % and +2.4 % (docs/training.md)
TIMEOUT = 1800  # s for one torchrun launch: two busy cores, and two workers importing torch on them

needs_gloo = pytest.mark.skipif(
    not distributed.available(), reason="torch.distributed with the gloo backend is not available in this torch"
)


def world(size: int, rank: int) -> distributed.World:
    return distributed.World(size=size, rank=rank)


@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shares_are_contiguous_and_cover_the_batch(size: int) -> None:
    for n in (0, 1, 5, 8, 13):
        parts = [distributed.share(n, world(size, r)) for r in range(size)]
        assert [i for p in parts for i in range(n)[p]] == list(range(n))
        lengths = [p.stop - p.start for p in parts]
        assert lengths == sorted(lengths, reverse=True) and max(lengths) - min(lengths) <= 1


@pytest.mark.parametrize("size", [1, 2, 3])
def test_augmenting_shares_with_the_global_draws_is_augmenting_the_batch(size: int) -> None:
    """Every rank draws the global batch's flips, shifts and hidden quality planes (the generator calls of
    one process) and applies its rows' part: the shares put together are the one-process batch, bit for bit."""
    x = torch.rand(9, 7, 16, 16)
    copies = torch.tensor([0, 1, 0, 0, 1, 1, 0, 1, 0], dtype=torch.bool)
    one = torch.Generator().manual_seed(5)
    want = hide_quality(augment(x, copies, one), 0.3, one)
    after_one = torch.rand(1, generator=one)
    pieces = []
    for rank in range(size):
        gen = torch.Generator().manual_seed(5)  # every rank: the same generator, the same calls
        flip, shift = augment_draws(copies, gen)
        hidden = hide_draws(len(x), 0.3, gen)
        mine = distributed.share(len(x), world(size, rank))
        pieces.append(apply_hide(apply_augment(x[mine], copies[mine], flip[mine], shift[mine]), hidden[mine]))
        assert torch.equal(torch.rand(1, generator=gen), after_one)  # the stream goes on in step
    assert torch.equal(torch.cat(pieces), want)


@pytest.mark.parametrize("size", [2, 3])
def test_the_ranks_average_gradient_is_the_global_batchs(size: int) -> None:
    """Each share's loss over the global batch's counts, x world size: DDP's mean of the ranks' gradients
    is the one-process gradient of the global batch (eval mode: BatchNorm off the table)."""
    torch.manual_seed(0)
    model = build_model(False, 2, 3, True).eval()
    x = torch.randn(7, 7, 32, 32)
    y = torch.tensor([1, 0, -1, 1, 1, -1, 0])
    target = torch.rand(7, 3)
    mask = torch.rand(7, 3) < 0.6
    mask[:3] = False  # the first share (of 3) has no defined target at all

    def grads(loss: torch.Tensor) -> list[torch.Tensor]:
        return torch.autograd.grad(loss, list(model.parameters()))

    want = grads(batch_loss(*model.forward_all(x), y, target, mask, 0.7))
    totals = (int((y >= 0).sum()), int(mask.sum()))
    mean = [torch.zeros_like(g) for g in want]
    for rank in range(size):
        s = distributed.share(len(x), world(size, rank))
        part = grads(batch_loss(*model.forward_all(x[s]), y[s], target[s], mask[s], 0.7, totals, size))
        mean = [m + g / size for m, g in zip(mean, part, strict=True)]
    for m, w in zip(mean, want, strict=True):
        torch.testing.assert_close(m, w, rtol=1e-4, atol=1e-6)


def test_without_torchrun_the_world_is_one_process() -> None:
    assert distributed.from_env({}) == distributed.World()
    here = distributed.world()
    assert (here.size, here.rank, here.main) == (1, 0, True)
    model = build_model()
    assert distributed.wrap(model, torch.device("cpu")) is model
    assert distributed.gather("x") == ["x"] and distributed.sum_all([1.5]) == [1.5]
    assert distributed.share(5) == slice(0, 5)


# --- real processes ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_facts(make_manifest(tmp_path_factory.mktemp("labels")))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ddp")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, *args: str, max_restarts: int = 0, no_python: bool = False) -> list[str]:
    """A torchrun launch on the loopback interface (c10d rendezvous on a free port, as across machines)."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", f"--nproc-per-node={nproc}"]
    launch += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "test"]
    launch += ["--max-restarts", str(max_restarts), "--monitor-interval", "0.5"]
    script = Path(sys.executable).with_name("image-utility")
    if no_python and script.is_file():  # the form docker/k8s/train/job.yaml runs
        return [*launch, "--no-python", str(script), "train", *args]
    return [*launch, "-m", "training.train", *args]


def environment() -> dict[str, str]:
    """Workers import this checkout's packages (the venv's editable install may be another checkout)."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def launch(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO, env=environment(), stdout=log.open("w"), stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, log: Path) -> None:
    try:
        rc = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    assert rc == 0, log.read_text()[-4000:]


def run_torchrun(nproc: int, out: Path, *args: str, **kw: object) -> Path:
    log = out.with_name(out.name + ".log")
    finish(launch(torchrun(nproc, *args, "--output-dir", str(out), **kw), log), log)
    return out


def run_here(out: Path, *args: str) -> Path:
    assert train.main([*args, "--output-dir", str(out)]) == 0
    return out


def history(run: Path) -> list[dict]:
    return json.loads((run / "history.json").read_text())


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]


def common(labels: Path, runs: Path, epochs: int = 2) -> list[str]:
    return [str(labels), *RECIPE, "--epochs", str(epochs), "--cache-dir", str(runs / "cache")]


@pytest.fixture(scope="module")
def one(labels: Path, runs: Path) -> Path:
    """One process, in this one (as `image-utility train` runs without torchrun)."""
    return run_here(runs / "one", *common(labels, runs))


@pytest.fixture(scope="module")
def two(labels: Path, runs: Path, one: Path) -> Path:
    """Two processes, launched as the Kubernetes Job does (torchrun --no-python image-utility train)."""
    return run_torchrun(2, runs / "two", *common(labels, runs), "--resume", "auto", no_python=True)


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@needs_gloo
@pytest.mark.slow
def test_two_processes_train_as_one_does(one: Path, two: Path) -> None:
    h1, h2 = history(one), history(two)
    assert [h["processes"] for h in h2] == [2, 2] and [h["processes"] for h in h1] == [1, 1]
    for a, b in zip(h1, h2, strict=True):
        assert a["train"]["images"] == b["train"]["images"] and a["train"]["steps"] == b["train"]["steps"]
        assert relative(b["train"]["loss"], a["train"]["loss"]) < TOLERANCE, (a["train"], b["train"])
        for split in ("val", "test"):  # every row of the split, gathered from both ranks
            assert b[split]["n"] == a[split]["n"] and sum(map(sum, b[split]["confusion"])) == a[split]["n"]
    best1 = json.loads((one / "summary.json").read_text())["best"]
    best2 = json.loads((two / "summary.json").read_text())["best"]
    assert best2["epoch"] == best1["epoch"] and best2["on"] == best1["on"]
    assert torch.load(two / "best.pt", weights_only=False)["epoch"] == best1["epoch"]
    log = (two.with_name("two.log")).read_text()
    assert log.count("INFO training.train: epoch 2:") == 1  # rank 0 logs, rank 1 does not
    assert not [p.name for p in two.iterdir() if p.name.startswith(".")]


@needs_gloo
@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_run_ends_as_an_uninterrupted_one(
    labels: Path, runs: Path, two: Path
) -> None:
    """SIGKILL one worker mid-epoch 2; torchrun (--max-restarts 1) restarts the group, which resumes from
    epoch 1's checkpoint: the final weights equal the uninterrupted 2-process run's, tensor for tensor."""
    out = runs / "killed"
    log = runs / "killed.log"
    proc = launch(torchrun(2, *common(labels, runs), "--output-dir", str(out), "--resume", "auto", max_restarts=1), log)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (out / "checkpoint.pt").is_file():  # epoch 1 written, and the workers into epoch 2
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "epoch 1 never ended"
            time.sleep(0.05)
        workers = {int(p.environ()["RANK"]): p for p in psutil.Process(proc.pid).children() if "RANK" in p.environ()}
        assert sorted(workers) == [0, 1]
        victim = workers[1].pid
        os.kill(victim, signal.SIGKILL)
        # the survivor cannot finish epoch 2 alone: what is on disk now is what the restart resumes from
        assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1, "killed too late: epoch 2 done"
        finish(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "torchrun restart 1: resuming from the last checkpoint" in text, text[-4000:]
    assert f"(pid: {victim})" in text  # torchrun reports the worker that died
    a, b = weights(two), weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["epoch"] for h in history(out)] == [1, 2]
    assert [h["train"]["loss"] for h in history(out)] == [h["train"]["loss"] for h in history(two)]


@needs_gloo
@pytest.mark.slow
def test_a_checkpoint_resumes_on_another_number_of_processes(labels: Path, runs: Path, one: Path, two: Path) -> None:
    """Epoch 1 on 2 processes, epoch 2 on 1 (and the other way round): each run completes, its first epoch
    is the straight run's of that world size, and switching halfway moves the weights less than training
    on the other world size throughout does."""
    down = run_torchrun(2, runs / "down", *common(labels, runs, epochs=1))
    run_here(down, "--resume", "auto", "--epochs", "2")
    up = run_here(runs / "up", *common(labels, runs, epochs=1))
    run_torchrun(2, up, "--resume", "auto", "--epochs", "2")
    apart = drift(one, two)
    assert 0 < apart < 0.01
    for resumed, straight, sizes in ((down, two, [2, 1]), (up, one, [1, 2])):
        h, s = history(resumed), history(straight)
        assert [r["processes"] for r in h] == sizes and [r["epoch"] for r in h] == [1, 2]
        assert h[0]["train"]["loss"] == s[0]["train"]["loss"]  # epoch 1: the same world size, the same run
        assert relative(h[1]["train"]["loss"], s[1]["train"]["loss"]) < TOLERANCE
        assert weights(resumed).keys() == weights(straight).keys()
        assert drift(resumed, straight) < apart


def drift(a: Path, b: Path) -> float:
    """Relative L2 distance of two runs' parameters (BatchNorm's running statistics left out)."""
    wa, wb = weights(a), weights(b)
    keys = [k for k in wa if wa[k].is_floating_point() and "running_" not in k]
    diff = sum(float((wa[k] - wb[k]).pow(2).sum()) for k in keys)
    return (diff / sum(float(wa[k].pow(2).sum()) for k in keys)) ** 0.5
