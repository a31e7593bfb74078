"""The ``train@<family>`` stage: data -> one family -> models/<family>/model.pt + per-epoch log.

Runs as one process (``python stages/train.py``) or data-parallel under ``torchrun``; then rank 0
alone talks to MLflow and writes the model, the CSV and the resumable state (docs/distributed.md).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from facegen import distributed, paths
from facegen.config import Params, params_hash, to_dict
from facegen.data.dataset import load_split
from facegen.models import build
from facegen.reporting.grids import grid_array
from facegen.runtime import seed_everything, setup_runtime
from facegen.stage import ensure_writable
from facegen.tracking import Tracker, start_run
from facegen.training.checkpoint import save_model
from facegen.training.loop import FitResult, fit


def train_family(params: Params, family: str) -> FitResult:
    cfg = params.model(family)
    rt = setup_runtime(params.runtime)
    generator = seed_everything(params.seed)
    train = load_split(paths.PREPARED, "train", params.data.attributes)
    val = load_split(paths.PREPARED, "val", params.data.attributes)
    model = rt.prepare(build(family, cfg, params.data.image_size))
    digest = params_hash(params.seed, params.data, cfg)
    # Keyed by the params hash: a rerun only ever continues the *same* configuration. It lives in
    # runtime.state_dir, outside the stage's DVC outs, which dvc deletes before rerunning a stage.
    state_path = Path(params.runtime.state_dir) / f"train-{family}-{digest}.pt"
    with distributed.session(rt.device) as dist:
        if dist.is_main:
            ensure_writable(paths.model_file(family).parent, paths.train_log(family).parent, state_path.parent)
        logged = {"seed": params.seed, "data": to_dict(params.data), "model": to_dict(cfg),
                  "runtime": {**to_dict(params.runtime), "resolved_device": str(rt.device),
                              "resolved_precision": rt.precision, "world_size": dist.world_size},
                  "num_parameters": sum(p.numel() for p in model.parameters())}
        run = (start_run("train", family, logged, digest, params.tracking.experiment) if dist.is_main
               else contextlib.nullcontext(Tracker()))  # an inactive Tracker: every call is a no-op
        with run as tracker:
            def on_epoch(epoch: int, row: dict[str, float], images: dict) -> None:
                tracker.log_metrics(row, step=epoch)
                for name, batch in images.items():
                    tracker.log_image(grid_array(batch), f"epochs/{name}_{epoch:03d}.png")

            result = fit(model, train, val, cfg.train, rt, generator, state_path=state_path,
                         csv_path=paths.train_log(family), on_epoch=on_epoch, dist=dist,
                         params_key=f"models.{family}.train")
            if dist.is_main:
                save_model(model, paths.model_file(family))
                tracker.log_artifact(paths.model_file(family), "model")
                tracker.log_artifact(paths.train_log(family))
    if dist.is_main:
        state_path.unlink(missing_ok=True)
    return result
