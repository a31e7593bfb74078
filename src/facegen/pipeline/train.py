"""The ``train@<family>`` stage: data -> one family -> models/<family>/model.pt + per-epoch log.

Runs as one process (``python stages/train.py``) or data-parallel under ``torchrun``; then rank 0
alone talks to MLflow and writes the model, the CSV and the resumable state (docs/distributed.md).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from facegen import artifacts
from facegen.config import Params, to_dict
from facegen.data.dataset import load_split
from facegen.models import build
from facegen.models.checkpoint import save_model
from facegen.pipeline.session import session
from facegen.training.loop import FitResult


def train_family(params: Params, family: str) -> FitResult:
    cfg = params.model(family)
    model_file, log_file = artifacts.model_file(family), artifacts.train_log(family)
    with session(params) as s:
        train = load_split(artifacts.PREPARED, "train", params.data.attributes)
        val = load_split(artifacts.PREPARED, "val", params.data.attributes)
        model = s.rt.prepare(build(family, cfg, params.data.image_size))
        if s.dist.is_main:
            artifacts.ensure_writable(model_file.parent, log_file.parent, Path(params.runtime.state_dir))
        logged = {"seed": params.seed, "data": to_dict(params.data), "model": to_dict(cfg),
                  "num_parameters": sum(p.numel() for p in model.parameters())}
        with s.tracked("train", family, logged, params.seed, params.data, cfg) as run:
            run.tracker.log_dataset(artifacts.PREPARED, to_dict(params.data))
            result = run.fit(model, train, val, cfg.train, log_file, f"models.{family}.train")
            run.save(partial(save_model, model), model_file, log_file)
    return result
