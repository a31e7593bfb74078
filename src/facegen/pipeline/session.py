"""The set-up every training stage repeats, written once.

* :func:`session`: runtime, seed and (under torchrun) the process group for one stage execution.
* :meth:`Session.tracked`: one MLflow run plus the resumable-state file of one configuration;
  :meth:`TrainingRun.fit` / :meth:`TrainingRun.save`: "train, log, save", the same for the
  families, the attribute classifier and the prior.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from facegen import distributed
from facegen.config import Params, TrainConfig, params_hash, to_dict
from facegen.data.dataset import FaceSplit
from facegen.reporting.grids import grid_array
from facegen.runtime import Runtime, seed_everything, setup_runtime
from facegen.tracking import Tracker, start_run
from facegen.training.loop import FitResult, fit


@dataclass
class TrainingRun:
    """One tracked training: where its resumable state lives, and the MLflow run it logs to."""

    session: Session
    tracker: Tracker
    state_path: Path

    def fit(self, model: nn.Module, train: FaceSplit, val: FaceSplit, cfg: TrainConfig, csv_path: Path,
            params_key: str) -> FitResult:
        """``training.loop.fit`` with per-epoch metrics (and any monitoring images) logged to the run."""
        def on_epoch(epoch: int, row: dict[str, float], images: dict[str, torch.Tensor]) -> None:
            self.tracker.log_metrics(row, step=epoch)
            for name, batch in images.items():
                self.tracker.log_image(grid_array(batch), f"epochs/{name}_{epoch:03d}.png")

        s = self.session
        return fit(model, train, val, cfg, s.rt, s.generator, state_path=self.state_path, csv_path=csv_path,
                   on_epoch=on_epoch, dist=s.dist, params_key=params_key)

    def save(self, write: Callable[[Path], None], path: Path, *logs: Path) -> None:
        """Rank 0 only: ``write(path)`` the trained weights, then log them (and ``logs``) to the run and
        register them as a new version of ``facegen-<name>`` (alias ``current``: tracking.register_model)."""
        if self.session.dist.is_main:
            write(path)
            self.tracker.log_artifact(path, "model")
            self.tracker.register_model("model")
            for log_file in logs:
                self.tracker.log_artifact(log_file)


@dataclass
class Session:
    """What every stage sets up first: the runtime (device, precision, threads), the seeded
    generator, and the process group when torchrun started several ranks."""

    params: Params
    rt: Runtime
    generator: torch.Generator
    dist: distributed.Distributed

    @contextlib.contextmanager
    def tracked(self, stage: str, name: str, logged: Mapping[str, Any], *key: Any) -> Iterator[TrainingRun]:
        """One MLflow run ``<stage>:<name>`` (rank 0 only) and the state file of this exact configuration.

        The state is keyed by the hash of ``key`` (the params that define the result), so a rerun only
        ever continues the *same* configuration. It lives in ``runtime.state_dir``, outside the stage's
        DVC outs (dvc deletes those before rerunning a stage), and is deleted after a clean finish.
        """
        digest = params_hash(*key)
        state_path = Path(self.params.runtime.state_dir) / f"{stage}-{name}-{digest}.pt"
        logged = {**logged, "runtime": {**to_dict(self.params.runtime), "resolved_device": str(self.rt.device), "resolved_precision": self.rt.precision,
                                        "world_size": self.dist.world_size}}
        run = (start_run(stage, name, logged, digest, self.params.tracking.experiment) if self.dist.is_main
               else contextlib.nullcontext(Tracker()))  # an inactive Tracker: every call is a no-op
        with run as tracker:
            yield TrainingRun(self, tracker, state_path)
        if self.dist.is_main:
            state_path.unlink(missing_ok=True)


@contextlib.contextmanager
def session(params: Params) -> Iterator[Session]:
    """Runtime, then the seed (model initialisation draws from it), then the process group."""
    rt = setup_runtime(params.runtime)
    generator = seed_everything(params.seed)
    with distributed.session(rt.device) as dist:
        yield Session(params, rt, generator, dist)
