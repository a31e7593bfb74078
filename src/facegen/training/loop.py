"""The one training loop for every family.

Families differ only inside ``train_step`` (a GAN does its D and G updates there), so epochs,
progress, averaging, validation, per-epoch logging, resumable state and data parallelism are
written once.

Speed notes: per-step losses stay on the device and are summed as tensors; the host reads them
once per epoch (plus a throttled progress-bar refresh), so there is no ``.item()`` sync per step.
Optimisers come from ``Runtime.optimizers`` (fused kernels where the device has them).

Under ``torchrun`` (``dist.world_size > 1``) each rank trains on its slice of every global batch;
facegen.distributed makes the ranks one process on the global batch (synchronised BatchNorm, the
VQ codebook's statistics summed across ranks, gradients averaged at each optimiser step), and only
rank 0 writes the CSV, the resumable state and calls ``on_epoch`` (tracking).

Data: on CUDA the train and validation splits are copied to the device once, as uint8, when they fit
(``FaceSplit.on_device``), and each epoch's permutation is applied there; otherwise batches are
gathered from the memory-mapped split into pinned memory and copied asynchronously. Either way a
step neither reads the host's data synchronously nor makes the host wait for the device.

A NaN/inf epoch loss stops training with a TrainingDivergedError (no state or model is written
for it). The check reads the per-epoch means the loop computes anyway: a non-finite loss at any
step makes its epoch sum non-finite, so no per-step sync and no change to a finite run.

Timings (seconds, img/s) go to ``on_epoch`` (MLflow) and the log only: the CSV is a DVC output and
holds only what the inputs determine.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from facegen import distributed
from facegen.config import TrainConfig
from facegen.data.dataset import FaceSplit
from facegen.distributed import Distributed
from facegen.errors import TrainingDivergedError
from facegen.models.base import GenerativeModel
from facegen.runtime import Runtime, eval_mode
from facegen.artifacts import atomic_save, write_text
from facegen.training.state import STATE_FORMAT, code_hash, load_matching, set_aside

PROGRESS_EVERY = 20  # steps between progress-bar loss refreshes (each one is a host sync)
log = logging.getLogger(__name__)


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int = 0


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG that influences training, in weights_only-loadable types (tensors, tuples, ints)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"data": generator.get_state(), "torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []}


def _restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    generator.set_state(state["data"])
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def write_history(history: list[dict[str, float]], path: Path) -> None:
    """Per-epoch CSV (a DVC plot): rewritten whole each epoch so a kill never leaves half a row."""
    keys = list(dict.fromkeys(k for row in history for k in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    write_text(path, text.getvalue())


def _mean(sums: dict[str, torch.Tensor], count: int, prefix: str) -> dict[str, float]:
    return {f"{prefix}/{k}": float(v) / max(count, 1) for k, v in sums.items()}


def _accumulate(sums: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> None:
    for k, v in out.items():
        v = v.detach().float()
        sums[k] = sums[k] + v if k in sums else v.clone()


def _shapes(state: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def lr_schedulers(opts: dict[str, torch.optim.Optimizer], tcfg: TrainConfig, steps_per_epoch: int
                  ) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
    """One per-step scheduler per optimiser for ``tcfg.schedule`` (none for ``constant``).

    ``onecycle`` is torch's OneCycleLR peaking at each optimiser's own learning rate (``tcfg.lr``, or a
    multiple of it: the DCGAN's TTUR) after 30 % of the steps (``linear`` warm-up from lr/25, cosine
    decay to lr/1e4). Momentum is *not* cycled: it would overwrite Adam's β1, which the DCGAN sets to
    0.5 on purpose (Radford et al. 2016).
    """
    if tcfg.schedule == "constant":
        return {}
    total = max(tcfg.epochs * steps_per_epoch, 1)
    return {name: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opt.defaults["lr"], total_steps=total,
                                                      pct_start=0.3, anneal_strategy="cos", cycle_momentum=False)
            for name, opt in opts.items()}


def _schedule_key(states: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Which optimisers are scheduled, and over how many steps (OneCycleLR's ``total_steps``)."""
    return {name: st.get("total_steps") for name, st in states.items()}


def _resume(state_path: Path | None, code: str, model: GenerativeModel, opts: dict[str, torch.optim.Optimizer],
            scheds: dict[str, torch.optim.lr_scheduler.LRScheduler], generator: torch.Generator,
            result: FitResult) -> None:
    """Continue from the last completed epoch when ``state_path`` holds this code's state for this model.

    A state that does not fit (other code, other tensor shapes, other optimisers) is set aside with
    one warning before anything is loaded, so a fresh start is exactly a fresh start.
    """
    state = load_matching(state_path, code)
    if state is None:
        return
    assert state_path is not None
    if _shapes(state["model"]) != _shapes(model.state_dict()) or set(state["optimizers"]) != set(opts):
        set_aside(state_path, f"holds a different {model.family} architecture")
        return
    # A schedule is a function of the run's total steps: one cut for 1 epoch cannot continue a run of 3.
    if _schedule_key(state.get("schedulers", {})) != _schedule_key({k: s.state_dict() for k, s in scheds.items()}):
        set_aside(state_path, "holds a different learning-rate schedule (schedule or epochs changed)")
        return
    try:  # Optimizer.load_state_dict checks group and parameter counts before it changes anything
        for name, opt in opts.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in scheds.items():
            sched.load_state_dict(state["schedulers"][name])
    except (ValueError, KeyError) as err:
        set_aside(state_path, f"holds optimiser state that does not fit ({err})")
        return
    model.load_state_dict(state["model"])
    _restore_rng(state["rng"], generator)
    result.history = state["history"]
    result.resumed_from_epoch = state["epoch"]
    log.info("%s: resuming after epoch %d from %s", model.family, state["epoch"], state_path)


def _diverged(row: dict[str, float]) -> str | None:
    """The first non-finite metric of an epoch row, as ``name = value``, or None."""
    for name, value in row.items():
        if not math.isfinite(value):
            return f"{name} = {value}"
    return None


def fit(model: GenerativeModel, train: FaceSplit, val: FaceSplit | None, tcfg: TrainConfig, rt: Runtime,
        generator: torch.Generator, *, state_path: Path | None = None, csv_path: Path | None = None,
        on_epoch: Callable[[int, dict[str, float], dict[str, torch.Tensor]], None] | None = None,
        dist: Distributed = Distributed(), params_key: str = "train") -> FitResult:
    """Train ``model`` for ``tcfg.epochs``; resume from ``state_path`` when it holds a matching state.

    ``on_epoch(epoch, row, images)`` receives the epoch's metrics plus its timings and monitoring
    images (tracking). ``tcfg.batch_size`` is the global batch: each of ``dist.world_size`` ranks
    takes its share. ``params_key`` is where ``tcfg`` lives in params.yaml (``models.vae.train``),
    so a divergence names the knob to lower. Raises TrainingDivergedError on a NaN/inf epoch.
    """
    code = code_hash()  # at entry: by now the same code has always loaded the same modules
    opts = rt.optimizers(model)
    result = FitResult()
    batch_size = dist.local_batch(tcfg.batch_size, f"{params_key}.batch_size")
    train = train.on_device(rt.device)
    val = val.on_device(rt.device) if val is not None else None
    steps_per_epoch = train.num_batches(batch_size, drop_last=True, world_size=dist.world_size)
    if tcfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, tcfg.max_steps_per_epoch)
    scheds = lr_schedulers(opts, tcfg, steps_per_epoch)
    _resume(state_path, code, model, opts, scheds, generator, result)
    if dist.enabled:
        distributed.prepare_training(model, opts.values(), dist)
    for epoch in range(result.resumed_from_epoch, tcfg.epochs):
        model.train()
        sums: dict[str, torch.Tensor] = {}
        t0 = time.perf_counter()
        images_seen = 0
        batches = train.batches(batch_size, rt.device, shuffle=True, generator=generator,
                                channels_last=rt.channels_last, drop_last=True,
                                rank=dist.rank, world_size=dist.world_size)
        # closed also when an interrupt unwinds, so its line ends before the stage's one-line message
        with tqdm(total=steps_per_epoch, desc=f"{model.family} epoch {epoch + 1}/{tcfg.epochs}",
                  disable=not dist.is_main, dynamic_ncols=True, mininterval=1.0) as bar:
            for step, batch in enumerate(batches):
                if step >= steps_per_epoch:
                    break
                rt.step_begin()
                with rt.autocast():
                    out = model.train_step(batch, opts)
                for sched in scheds.values():
                    sched.step()
                _accumulate(sums, out)
                images_seen += batch.images.shape[0]
                bar.update(1)
                if step % PROGRESS_EVERY == 0:
                    bar.set_postfix({k: f"{float(v):.4g}" for k, v in out.items() if k in ("loss", "loss_d", "loss_g")})
        seconds = time.perf_counter() - t0
        if dist.enabled:
            sums = distributed.average_values(sums, dist.world_size)
            distributed.check_in_sync(model)
        row: dict[str, float] = {"epoch": epoch + 1, **_mean(sums, steps_per_epoch, "train")}
        if val is not None and len(val):
            row.update(evaluate_losses(model, val, tcfg.batch_size, rt, dist))
        timings = {"img_per_s": images_seen * dist.world_size / seconds, "seconds": seconds}
        log.info("%s epoch %d: %.1f s, %.0f img/s", model.family, epoch + 1, seconds, timings["img_per_s"])
        result.history.append(row)
        bad = _diverged(row)
        monitor = model.epoch_end(epoch) if bad is None else {}  # no grid of NaN images
        if dist.is_main:
            if csv_path is not None:
                write_history(result.history, csv_path)  # with the diverged row: it shows where
            if on_epoch is not None:
                on_epoch(epoch + 1, {**row, **timings}, monitor)
            if state_path is not None and bad is None:
                atomic_save({
                    "format": STATE_FORMAT, "code": code, "epoch": epoch + 1, "model": model.state_dict(),
                    "optimizers": {k: o.state_dict() for k, o in opts.items()},
                    "schedulers": {k: s.state_dict() for k, s in scheds.items()},
                    "rng": _rng_state(generator), "history": result.history,
                }, state_path)
        if bad is not None:
            raise TrainingDivergedError(
                f"{model.family} training diverged in epoch {epoch + 1} of {tcfg.epochs} ({bad}); no model was "
                f"written: lower {params_key}.lr (now {tcfg.lr:g}) in params.yaml and rerun")
    return result


def evaluate_losses(model: GenerativeModel, split: FaceSplit, batch_size: int, rt: Runtime,
                    dist: Distributed = Distributed()) -> dict[str, float]:
    """Average ``val_step`` losses over a split (BatchNorm in eval mode); ranks share the work."""
    sums: dict[str, torch.Tensor] = {}
    count = 0
    with eval_mode(model), rt.autocast():
        for batch in split.batches(batch_size, rt.device, channels_last=rt.channels_last,
                                   rank=dist.rank, world_size=dist.world_size):
            out = model.val_step(batch)
            n = batch.images.shape[0]
            _accumulate(sums, {k: v * n for k, v in out.items()})
            count += n
    if dist.enabled and sums:
        sums = distributed.average_values(sums, dist.world_size)  # every rank saw `count` images
    return _mean(sums, count, "val")
