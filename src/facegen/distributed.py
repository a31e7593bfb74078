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
* what forward passes compute from the batch is computed from the *global* batch, so W ranks are
  one process on the global batch, not W processes averaged afterwards: BatchNorm normalises with
  the global batch's statistics (:class:`SyncBatchNorm`, differentiable, so gradients flow through
  the shared statistics as in one process), and the VQ-VAE's EMA codebook all-reduces its code
  counts and sums before its update and takes dead-code restarts chosen on rank 0
  (:func:`sum_across_ranks_`, :func:`global_rows`);
* at the start, rank 0's parameters and buffers are broadcast; at each epoch end a checksum
  verifies the ranks still agree, so a family that edits weights outside its optimiser fails loud
  instead of silently training N different models.

Batch size stays *global*: step k's global batch is the single-process batch k, and rank r takes its
r-th contiguous slice (``FaceSplit.batches``), so the same params give the same optimisation however
many processes run: ``tests/test_ddp.py`` checks two gloo ranks against one process, tensor by tensor.
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

MIN_RANK_BATCH = 16  # images per rank and step below which data parallelism is refused


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

    def local_batch(self, batch_size: int, key: str = "train.batch_size") -> int:
        """Images per rank and step for a *global* ``batch_size`` (params.yaml's ``key``).

        Raises ConfigError when it does not split evenly, or leaves a rank fewer than
        :data:`MIN_RANK_BATCH` images: a GPU step on a handful of images is launch-bound, so W ranks
        would run no faster than one, while paying a collective per BatchNorm layer and per optimiser.
        """
        if batch_size % self.world_size:
            raise ConfigError(f"params.yaml: {key} {batch_size} must be divisible by the "
                              f"{self.world_size} processes torchrun started (it is the global batch)")
        local = batch_size // self.world_size
        if self.enabled and local < MIN_RANK_BATCH:
            raise ConfigError(f"params.yaml: {key} {batch_size} over {self.world_size} processes leaves {local} "
                              f"images per process, below {MIN_RANK_BATCH}: start fewer processes (torchrun "
                              f"--nproc_per_node) or raise the batch size (docs/distributed.md)")
        return local


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


def group_size() -> int:
    """Processes in the joined process group; 1 when none was joined (a plain single-process run)."""
    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


def _all_reduce_(tensors: Iterable[torch.Tensor], divisor: int = 1) -> None:
    """Sum tensors across ranks in place (then divide by ``divisor``): one flat all-reduce per
    (device, dtype) bucket. Asynchronous on CUDA: nothing here waits for the host."""
    buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        buckets.setdefault((t.device, t.dtype), []).append(t)
    for group in buckets.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        tdist.all_reduce(flat)
        if divisor != 1:
            flat.div_(divisor)
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def _mean_(tensors: list[torch.Tensor], world_size: int) -> None:
    """Average tensors across ranks in place."""
    _all_reduce_(tensors, world_size)


def sum_across_ranks_(*tensors: torch.Tensor) -> None:
    """Replace each tensor by its sum over the ranks of the process group (no-op for one process)."""
    if group_size() > 1:
        with torch.no_grad():
            _all_reduce_(tensors)


def global_rows(local: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` rows drawn uniformly from the *global* batch's rows, identical on every rank: (count, D).

    ``local`` (M, D) holds this rank's rows, and the global batch is the ranks' rows in rank order
    (rank r holds global rows r·M ... (r+1)·M - 1: ``FaceSplit.batches`` gives rank r the r-th
    contiguous slice of every global batch, and each image contributes the same number of rows).
    Rank 0 draws the global row indices from its torch generator and broadcasts them; the rank
    holding each row contributes it and one all-reduce of (count, D) gives every rank the rows.
    With one process this is ``local[randint(0, M, (count,))]``, the same draw as rank 0's, so W
    ranks restart codes exactly as one process on the global batch does. Nothing waits for the host.
    """
    m = local.shape[0]
    world = group_size()
    pick = torch.randint(0, m * world, (count,), device=local.device)
    if world == 1:
        return local[pick]
    tdist.broadcast(pick, src=0)
    offset = pick - tdist.get_rank() * m
    mine = (offset >= 0) & (offset < m)
    rows = local[offset.clamp(0, m - 1)] * mine.unsqueeze(1).to(local.dtype)
    tdist.all_reduce(rows)
    return rows


class SyncBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` that, in training under a process group of W > 1, normalises with the
    statistics of the global batch (all ranks' images) instead of this rank's share of it.

    Why not ``torch.nn.SyncBatchNorm``: it has no CPU kernels (``batch_norm_stats`` is CUDA-only),
    so gloo runs and this project's tests could never execute it, and each of its forwards waits for
    the host (it drops empty ranks with a boolean mask; pytorch#78549). Here one all-reduce of
    (2C + 1) numbers per forward carries per-channel sums and sums of squares, shifted by the
    running mean (identical on every rank) so the variance does not cancel catastrophically, and
    the element count. The all-reduce is ``torch.distributed.nn``'s differentiable one: its backward
    all-reduces the gradient of the shared statistics, so each rank's gradient includes what its
    images contribute to the other ranks' losses, exactly as one process on the global batch.
    Running statistics follow ``BatchNorm2d`` (unbiased variance, ``momentum``, or the cumulative
    average when ``momentum`` is None). Eval mode, or a single process, is plain ``BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or group_size() == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce  # differentiable all-reduce

        c = x.shape[1]
        xf = x.float()
        shift = (self.running_mean.detach().clone() if self.running_mean is not None
                 else xf.new_zeros(c)).view(1, c, 1, 1)
        d = xf - shift
        local = torch.cat([d.sum((0, 2, 3)), (d * d).sum((0, 2, 3)), xf.new_full((1,), xf.numel() // c)])
        stats = all_reduce(local)
        n = stats[2 * c]
        mean_d = stats[:c] / n
        var = (stats[c:2 * c] / n - mean_d * mean_d).clamp_min(0)  # biased, as BatchNorm normalises
        mean = shift.view(c) + mean_d
        y = (xf - mean.view(1, c, 1, 1)) * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (self.momentum if self.momentum is not None
                          else 1.0 / self.num_batches_tracked.to(mean.dtype))  # a tensor: no host sync
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * n / (n - 1), factor)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Turn every ``nn.BatchNorm2d`` in ``module`` into a :class:`SyncBatchNorm` in place.

    The class is swapped on the existing objects (SyncBatchNorm adds no state, only a forward), so
    parameters, buffers, state_dict keys, optimiser references and copies held elsewhere (the
    DCGAN's EMA generator) all stay as they are; a checkpoint loads into a plain model unchanged.
    """
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = SyncBatchNorm
    return module


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
    """Give each rank other than 0 its own stream for noise (z, ε), derived from the shared seed.

    The data-order generator stays identical on all ranks (they shard one shared permutation); the
    global torch RNG must not, or every rank would draw the same GAN noise for different images.
    Rank 0 keeps the single-process stream untouched (nothing is drawn from it here), so what it
    draws for everyone (the VQ-VAE's restarts, :func:`global_rows`) is what one process draws.
    """
    if rank:
        torch.manual_seed((torch.initial_seed() * 1_000_003 + rank) % 2**63)


def prepare_training(model: nn.Module, opts: Iterable[torch.optim.Optimizer], dist: Distributed) -> None:
    """Everything that makes ``dist.world_size`` ranks train one model as one process would on the
    global batch: synchronised BatchNorm, rank 0's weights everywhere, gradient averaging at each
    optimiser step, and per-rank noise streams. Call once, before the first step."""
    sync_batchnorm(model)
    broadcast_state(model)
    average_gradients(opts, dist.world_size)
    decorrelate_rng(dist.rank)
