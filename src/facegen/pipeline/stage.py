"""Shared plumbing of the pipeline stages: the entry point, and the set-up every stage repeats.

* :func:`stage_main`: what ``stages/*.py`` call (argument parsing, one-line errors).
* :func:`session`: runtime, seed and (under torchrun) the process group for one stage execution.
* :meth:`Session.tracked`: one MLflow run plus the resumable-state file of one configuration;
  :meth:`TrainingRun.fit` / :meth:`TrainingRun.save`: "train, log, save", the same for the
  families, the attribute classifier and the prior.

User errors (FacegenError) become one line on stderr and exit code 2, no traceback: a traceback
says "bug in facegen", which a missing dataset or a typo in params.yaml is not. So do failures of
the machine rather than the code (OSError: disk full, read-only or vanished folder): outputs are
written atomically, so such a failure leaves the previous files or none, never half a file.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from facegen import distributed
from facegen.config import Params, TrainConfig, load_params, params_hash, to_dict
from facegen.data.dataset import FaceSplit
from facegen.errors import FacegenError
from facegen.reporting.grids import grid_array
from facegen.runtime import Runtime, seed_everything, setup_runtime
from facegen.tracking import Tracker, start_run
from facegen.training.loop import FitResult, fit


def _warn_one_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"warning: {message}", file=sys.stderr)


def stage_main(description: str, body: Callable[[Params, argparse.Namespace], None],
               add_args: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    if add_args is not None:
        add_args(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.showwarning = _warn_one_line
    try:
        params = load_params(args.params)
        body(params, args)
    except FacegenError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        print(f"error: {os_error_message(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; rerun the stage to continue (training resumes after its last completed epoch)",
              file=sys.stderr)
        sys.exit(130)


def os_error_message(err: OSError) -> str:
    """One line naming what the system refused and what to do about it."""
    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free disk space, then rerun"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make the output folders writable (or run from a checkout you own), then rerun"
    else:
        fix = "check that the path exists and is usable, then rerun"
    return f"{err.strerror or type(err).__name__}{where}: {fix}"


def ensure_writable(*directories: Path) -> None:
    """Fail before hours of work, not after, when an output folder cannot take a file."""
    for directory in directories:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as err:
            raise FacegenError(f"cannot write to {directory}/ ({err.strerror or type(err).__name__}): "
                               "make it writable (or run from a checkout you own), then rerun") from None


def family_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", required=True, help="model family (a key of models: in params.yaml)")


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
        """Rank 0 only: ``write(path)`` the trained weights, then log them (and ``logs``) to the run."""
        if self.session.dist.is_main:
            write(path)
            self.tracker.log_artifact(path, "model")
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
