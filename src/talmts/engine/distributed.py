"""One process or many: torchrun/DDP set-up, the sampler, and the learning-rate rule for the global batch.

``talmts train`` runs as one process (CPU or one GPU) or under ``torchrun`` (which sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT; multi-node through its rendezvous). NCCL is used on GPUs, gloo on CPU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # an immutable default

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_true(self, flag: bool) -> bool:
        """True only when ``flag`` is true on every process (so all of them stop together)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item() > 0.5)

    def any_true(self, flag: bool) -> bool:
        """True when ``flag`` is true on at least one process (so all of them act on it together)."""
        return not self.all_true(not flag)

    def mean_over_processes(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scalars averaged over the processes (the losses of the global batch, for logging)."""
        if not self.distributed:
            return values
        keys = list(values)
        t = torch.stack([values[k].float().reshape(()) for k in keys]).to(self.device)
        dist.all_reduce(t)
        return {k: v / self.world_size for k, v in zip(keys, t)}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: the process's GPU when CUDA is available, else the CPU; otherwise ``cpu``, ``cuda``, ``cuda:1``."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"train.device={name!r} but CUDA is not available here; use device=cpu or auto")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


def setup(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a one-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        store = _store_of_this_attempt(world)
        if store is None:
            dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
        else:
            dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def _store_of_this_attempt(world: int) -> dist.Store | None:
    """torchrun's store, seen under a prefix of its own for each restart of the workers; None when not under torchrun.

    torchrun's static rendezvous (``--master_port`` without ``--rdzv-backend``) keeps one store for all restarts, so
    without a fresh prefix a restarted worker can read the address a dead worker published and wait for it forever.
    """
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if restart is None or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    client = dist.TCPStore(addr, port, world, is_master=False, timeout=dist.constants.default_pg_timeout)
    return dist.PrefixStore(f"talmts/restart-{restart}", client)


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext, find_unused_parameters: bool = False) -> nn.Module:
    """DDP around the model when there are several processes; the model itself otherwise."""
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def scaled_lr(lr: float, global_batch: int, lr_batch: int, rule: str) -> float:
    """The learning-rate rule: ``lr`` is tuned for a global batch of ``lr_batch`` clips.

    ``sqrt`` (default, suited to Adam): lr * sqrt(global / lr_batch); ``linear``: lr * global / lr_batch;
    ``none``: lr as written. The global batch is train.batch_size (per process) times the number of processes.
    """
    ratio = global_batch / lr_batch
    if rule == "none":
        return lr
    if rule == "linear":
        return lr * ratio
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    raise ValueError(f"train.lr_scaling={rule!r}: choose one of ['sqrt', 'linear', 'none']")


class ResumableSampler(DistributedSampler):
    """DistributedSampler (also used with one process) that can skip the samples already seen in an epoch.

    The order of an epoch depends only on (seed, epoch), so a resumed run sees the same clips in the same
    order; with P processes, process r takes positions r, r + P, ... of that order, so a step of P processes
    with batch b covers exactly the clips one process with batch P * b would take.
    """

    def __init__(self, dataset: Dataset, ctx: DistContext, shuffle: bool = True, seed: int = 0):
        super().__init__(
            dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self.start = 0

    def set_start(self, index: int) -> None:
        """Skip the first ``index`` samples of this process's share (for the next epoch iterated)."""
        self.start = index

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())[self.start :]
        self.start = 0
        return iter(indices)

    def __len__(self) -> int:
        return self.num_samples - self.start
