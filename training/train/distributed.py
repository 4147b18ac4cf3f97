"""``image-utility train`` under ``torchrun``: the process group, and what each rank does of a step.

torchrun (``--nproc-per-node N``, ``--nnodes``/``--rdzv-endpoint`` across machines) starts one worker per
process and tells each its place through the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``);
:func:`init` joins them into a process group (gloo on CPU; on GPUs NCCL for the gradients and a gloo group
beside it for the small CPU collectives). Without torchrun, or with one process, nothing is set up and
every helper here is the identity: a plain run is exactly the single-process trainer.

What the trainer keeps global, and what each rank does on its own:

- the epoch order comes from (seed, epoch) on every rank, so every rank knows every global batch; the
  batch is dealt in contiguous shares (:func:`share`), rank 0 taking the largest;
- the random choices of augmentation are drawn for the whole global batch on every rank (the same
  generator calls as one process) and each rank applies its rows' share of them;
- the loss is divided by the global batch's counts (labelled rows, defined targets) and multiplied by the
  world size, so DDP's gradient average is the single-process gradient of the global batch;
- BatchNorm normalises with the statistics of the rank's own share on CPU (torch's ``SyncBatchNorm``
  runs only on GPUs), with the global batch's on GPUs (``SyncBatchNorm``); the running statistics are
  averaged across ranks after every step, weighted by the share (:func:`average_buffers`), so evaluation
  and checkpoints see the running mean one process would have (the variance: up to the spread of the
  shares' means);
- evaluation predicts a share of the rows per rank and gathers them (:func:`gather`), so every rank
  computes the metrics of the full split, as one process would;
- rank 0 alone writes files and logs at INFO; the others log warnings only and wait at a
  :func:`barrier`.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

# Followers wait at a barrier while their node's leader decodes the pixel cache: hours at the paper's scale.
# A worker that dies is not waited for: torchrun stops the others and restarts the group.
TIMEOUT = datetime.timedelta(hours=4)

_cpu_group: Any = None  # the gloo group for CPU tensors and objects (the default group when it is gloo)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    restart: int = 0  # torchrun's TORCHELASTIC_RESTART_COUNT

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env(env: dict[str, str] | None = None) -> World:
    """The world torchrun describes in the environment (a world of 1 without it)."""
    env = os.environ if env is None else env
    return World(
        size=int(env.get("WORLD_SIZE", 1)),
        rank=int(env.get("RANK", 0)),
        local_rank=int(env.get("LOCAL_RANK", 0)),
        restart=int(env.get("TORCHELASTIC_RESTART_COUNT", 0)),
    )


def world() -> World:
    """The current world: the process group's once :func:`init` has joined one, else a world of 1."""
    if not dist.is_available() or not dist.is_initialized():
        return World()
    return World(dist.get_world_size(), dist.get_rank(), from_env().local_rank, from_env().restart)


def available() -> bool:
    return dist.is_available() and dist.is_gloo_available()


def device_for(choice: str = "auto") -> torch.device:
    """``cpu``, or the GPU of this worker (``cuda:LOCAL_RANK``); ``auto``: a GPU where there is one."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch sees no GPU here")
    index, count = from_env().local_rank, torch.cuda.device_count()
    if index >= count:  # NCCL refuses two ranks on one GPU
        raise RuntimeError(f"worker LOCAL_RANK={index} but torch sees {count} GPUs: --nproc-per-node {count} at most")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init(device: torch.device) -> World:
    """Join the process group torchrun set up the environment for; nothing with one process."""
    global _cpu_group
    env = from_env()
    if env.size <= 1 or dist.is_initialized():
        return world()
    if not available():
        raise RuntimeError("torchrun started several processes but this torch has no torch.distributed/gloo")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        timeout=TIMEOUT,
        device_id=device if device.type == "cuda" else None,
        **({"store": store, "rank": env.rank, "world_size": env.size} if (store := attempt_store(env)) else {}),
    )
    _cpu_group = dist.new_group(backend="gloo", timeout=TIMEOUT) if backend != "gloo" else None
    here = world()
    quiet_followers(here)
    log.info(
        "rank %d of %d (%s, %s)%s",
        here.rank,
        here.size,
        backend,
        device,
        f", torchrun restart {here.restart}: resuming from the last checkpoint" if here.restart else "",
    )
    return here


def attempt_store(env: World) -> Any:
    """The store for this start's process group, where torchrun's own would be stale, else None (env://).

    Since torch 2.5 torchrun's c10d rendezvous hands every restart of the group the same store
    (``TORCHELASTIC_USE_AGENT_STORE``): the restarted workers read the addresses the dead ones published
    and fail to connect (pytorch/pytorch#135712; gloo and NCCL alike, reproduced with torch 2.14). On one
    machine one agent counts the restarts, so ``TORCHELASTIC_RESTART_COUNT`` names the start and scopes
    the keys. Across machines the agents' counts can differ: there torchrun itself must make a fresh store
    per start, with ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` in its environment (docker/k8s/train sets it)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    if int(os.environ.get("GROUP_WORLD_SIZE", 1)) > 1:
        if env.rank == 0:
            log.warning(
                "torchrun shares its store across restarts: set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for "
                "torchrun, or a restarted group cannot connect (pytorch/pytorch#135712)"
            )
        return None
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    agent = dist.TCPStore(host, port, env.size, is_master=False, timeout=TIMEOUT)
    return dist.PrefixStore(f"image-utility/start-{env.restart}", agent)


def close() -> None:
    global _cpu_group
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _cpu_group = None


def quiet_followers(here: World | None = None) -> None:
    """Logs from rank 0; the other ranks only say what goes wrong."""
    if not (here or world()).main:
        logging.getLogger().setLevel(logging.WARNING)


def share(n: int, here: World | None = None) -> slice:
    """This rank's rows of ``n``: contiguous, the first ``n % size`` ranks one more (``torch.tensor_split``)."""
    here = here or world()
    base, extra = divmod(n, here.size)
    start = here.rank * base + min(here.rank, extra)
    return slice(start, start + base + (here.rank < extra))


def barrier() -> None:
    if world().size > 1:
        dist.barrier(group=_cpu_group)


def sum_all(values: list[float]) -> list[float]:
    """The sum over ranks of each value (float64 on CPU)."""
    if world().size == 1:
        return values
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total, group=_cpu_group)
    return total.tolist()


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (tensors on the CPU), in rank order."""
    if world().size == 1:
        return [obj]
    out: list[Any] = [None] * world().size
    dist.all_gather_object(out, obj, group=_cpu_group)
    return out


@contextlib.contextmanager
def leader_first() -> Iterator[None]:
    """The body runs on each node's local rank 0 first, then on the others (a node-local cache is built once).
    A leader that fails does not release the others: torchrun stops them when it exits."""
    here = world()
    if here.size > 1 and here.local_rank != 0:
        barrier()
    yield
    if here.size > 1 and here.local_rank == 0:
        barrier()


class _Outputs(nn.Module):
    """DDP calls ``forward``; the trainer needs ``forward_all`` (logits and auxiliary outputs)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.net.forward_all(x)


class DistributedNet(nn.parallel.DistributedDataParallel):
    """DDP around a network with ``forward_all``, called as the trainer calls the network itself."""

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self(x)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The module the training steps call: ``model`` itself with one process, DDP around it with several
    (SyncBatchNorm on GPUs). ``model`` keeps its parameters: checkpoints save its own state_dict."""
    if world().size == 1:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # buffers (BatchNorm's running statistics) are averaged by average_buffers, not copied from rank 0
    # at every forward (torch 2.14 names the switch forward_sync_buffers, older ones broadcast_buffers)
    params = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    return DistributedNet(_Outputs(model), device_ids=[device.index] if device.type == "cuda" else None, **no_sync)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module.net if isinstance(model, DistributedNet) else model


@torch.no_grad()
def average_buffers(model: nn.Module, rows: int, total: int) -> None:
    """Float buffers (BatchNorm's running mean and variance) become the average over ranks weighted by
    each rank's rows of the step (``rows`` of ``total``); integer ones (batches tracked) rank 0's."""
    if world().size == 1:
        return
    buffers = list(unwrap(model).buffers())
    if not buffers:
        return
    weight = rows / max(total, 1)

    def part(b: torch.Tensor) -> torch.Tensor:
        w = weight if b.is_floating_point() else float(world().main)
        v = b.detach().flatten().to(torch.float64)
        return v * w if w else torch.zeros_like(v)  # an empty share's statistics count for nothing

    flat = torch.cat([part(b) for b in buffers])
    dist.all_reduce(flat)
    offset = 0
    for b in buffers:
        b.copy_(flat[offset : offset + b.numel()].view_as(b))
        offset += b.numel()
