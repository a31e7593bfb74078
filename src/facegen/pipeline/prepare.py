"""The ``prepare`` stage: :func:`facegen.data.prepare.prepare` into ``data/prepared`` in one MLflow run."""
from __future__ import annotations

import logging

import numpy as np
import torch

from facegen import artifacts
from facegen.config import Params, params_hash, to_dict
from facegen.data.prepare import PrepareSummary, prepare
from facegen.reporting.grids import grid_array
from facegen.tracking import start_run

log = logging.getLogger(__name__)
GRID_FACES = 64  # prepared training faces shown in the MLflow run


def prepare_stage(params: Params) -> PrepareSummary:
    """The ``prepare`` stage: :func:`prepare` into ``data/prepared`` inside one MLflow run.

    The run holds the data params, the split sizes and speed, and a grid of the first prepared
    training faces, so a user can see in the UI what every model was trained on.
    """
    logged = {"seed": params.seed, "data": to_dict(params.data)}
    with start_run("prepare", "data", logged, params_hash(params.seed, params.data),
                   params.tracking.experiment) as tracker:
        summary = prepare(params.data, params.seed, artifacts.PREPARED)
        log.info("prepared %s", summary)
        tracker.log_metrics({**{f"images_{s}": float(n) for s, n in summary.counts.items()},
                             "corrupt_skipped": float(summary.corrupt),
                             "prepare_images_per_s": summary.images_per_second,
                             "prepare_seconds": summary.seconds})
        faces = np.load(artifacts.PREPARED / "train.npy", mmap_mode="r")[:GRID_FACES]
        tracker.log_image(grid_array(torch.from_numpy(np.array(faces)).permute(0, 3, 1, 2).float() / 255),
                          "train_faces.png")
        tracker.log_artifact(artifacts.PREPARE_SUMMARY)
        tracker.log_dataset(artifacts.PREPARED, to_dict(params.data), context="output")
    return summary
