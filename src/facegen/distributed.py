"""Data-parallel training across processes started by ``torchrun`` (gloo on CPU, NCCL on CUDA).

Why not ``DistributedDataParallel``'s wrapper: DDP averages the gradients of what runs through the
wrapper's ``forward``, once per backward. Our families call their submodules directly inside
``train_step`` and a GAN does two backward/step pairs per step, the second one through a
discriminator whose parameters are frozen for it; routing that through DDP would need every family
to be rewritten around ``forward`` (plus ``find_unused_parameters`` or static-graph tricks). The
one point every family passes through is ``optimizer.step()``, so synchronisation happens there:

* gradients: a step pre-hook on every optimiser averages the gradients of exactly the parameters
  it is about to update, flattened into one bucket per dtype (one collective per optimiser step).
  That is DDP's arithmetic (the mean of per-rank gradients) without DDP's overlap of
  communication with the backward pass (see docs/distributed.md for the trade-off);
* buffers that forward passes update from local data (BatchNorm statistics, the VQ-VAE's EMA
  codebook) are averaged after every step, so all ranks keep one model;
* at the start, rank 0's parameters and buffers are broadcast; at each epoch end a checksum
  verifies the ranks still agree, so a family that edits weights outside its optimiser fails loud
  instead of silently training N different models.

Batch size stays *global*: each rank takes ``batch_size / world_size`` images of a shared
permutation, so the same params give the same optimisation however many processes run.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.distributed as tdist
from torch import nn

from facegen.errors import ConfigError


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, checkpoints and talks to MLflow."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def local_batch(self, batch_size: int) -> int:
        """Images per rank and step for a *global* ``batch_size``."""
        if batch_size % self.world_size:
            raise ConfigError(f"params.yaml: train.batch_size {batch_size} must be divisible by the "
                              f"{self.world_size} processes torchrun started (it is the global batch)")
        return batch_size // self.world_size


def from_env() -> Distributed:
    """Rank and world size as ``torchrun`` exports them; a plain ``python`` run is rank 0 of 1."""
    return Distributed(rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1)),
                       local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def local_world_size() -> int:
    """Processes sharing this machine (torchrun's LOCAL_WORLD_SIZE): they split its CPU cores."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1))


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[Distributed]:
    """Join the process group for the duration of a stage (no-op for a single process)."""
    dist = from_env()
    if not dist.enabled:
        yield dist
        return
    tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield dist
    finally:
        tdist.destroy_process_group()


def _mean_(tensors: list[torch.Tensor], world_size: int) -> None:
    """Average tensors across ranks in place: one flat all-reduce per (device, dtype) bucket."""
    buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        buckets.setdefault((t.device, t.dtype), []).append(t)
    for group in buckets.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        tdist.all_reduce(flat)
        flat.div_(world_size)
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def _state_tensors(module: nn.Module) -> Iterable[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def broadcast_state(module: nn.Module) -> None:
    """Make every rank start from rank 0's weights and buffers."""
    with torch.no_grad():
        for t in _state_tensors(module):
            tdist.broadcast(t, src=0)


def average_gradients(opts: Iterable[torch.optim.Optimizer], world_size: int) -> None:
    """Hook each optimiser so that its ``step()`` first averages its parameters' gradients."""
    def hook(opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        with torch.no_grad():
            _mean_(grads, world_size)

    for opt in opts:
        opt.register_step_pre_hook(hook)


def average_buffers(module: nn.Module, world_size: int) -> None:
    """Average floating-point buffers (BatchNorm statistics, EMA codebooks) across ranks."""
    with torch.no_grad():
        _mean_([b for b in module.buffers() if b.is_floating_point()], world_size)


def average_values(values: dict[str, torch.Tensor], world_size: int) -> dict[str, torch.Tensor]:
    """Mean of per-rank metric sums (one collective per epoch, not per step)."""
    out = {k: v.detach().clone() for k, v in values.items()}
    _mean_(list(out.values()), world_size)
    return out


def check_in_sync(module: nn.Module) -> None:
    """Fail loud if ranks hold different weights (a family edited them outside its optimiser)."""
    named = [(f"param {n}", p) for n, p in module.named_parameters()]
    named += [(f"buffer {n}", b) for n, b in module.named_buffers() if b.is_floating_point()]
    sums = torch.stack([t.detach().double().sum() for _, t in named])
    hi, lo = sums.clone(), -sums
    tdist.all_reduce(hi, op=tdist.ReduceOp.MAX)
    tdist.all_reduce(lo, op=tdist.ReduceOp.MAX)
    bad = [name for (name, _), a, b in zip(named, hi.tolist(), (-lo).tolist()) if a != b]
    if bad:
        raise RuntimeError(f"ranks disagree on {len(bad)} tensors after an epoch (first: {bad[0]}): the family "
                           "changes them outside optimizer.step() from rank-local data")


def decorrelate_rng(rank: int) -> None:
    """Give each rank its own stream for noise (z, ε, restarts), derived from the shared state.

    The data-order generator stays identical on all ranks (they shard one shared permutation); the
    global torch RNG must not, or every rank would draw the same GAN noise for different images.
    """
    seed = int(torch.randint(0, 2**62, ()).item()) + rank
    torch.manual_seed(seed)
