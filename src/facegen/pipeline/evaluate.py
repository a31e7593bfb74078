"""The ``evaluate@<family>`` stage: figures under reports/<family>/ and metrics/<family>.json.

Runs every analysis whose capability the family declares (see ``evaluation.analyses.ANALYSES``)
and records which were skipped, so the report can say so.
"""
from __future__ import annotations

import logging
import resource
import time
from pathlib import Path

import numpy as np
import torch

from facegen import artifacts
from facegen.config import Params, params_hash, to_dict
from facegen.data.dataset import FaceSplit, load_split
from facegen.evaluation.analyses import ANALYSES
from facegen.evaluation.context import EvalContext
from facegen.models.base import GenerativeModel
from facegen.models.checkpoint import load_attribute_classifier, load_trained
from facegen.reporting.plots import plot_training_curves
from facegen.runtime import Runtime, seed_everything, setup_runtime
from facegen.tracking import start_run

log = logging.getLogger(__name__)


def _inception_reference() -> torch.Tensor | None:
    """The test faces' Inception features the reference stage cached (None before it has run)."""
    path = artifacts.REFERENCE_INCEPTION
    return torch.from_numpy(np.load(path)) if path.is_file() else None


def eval_context(params: Params, family: str, model: GenerativeModel, rt: Runtime, out_dir: Path,
                 splits: tuple[FaceSplit, FaceSplit, FaceSplit] | None = None) -> EvalContext:
    """What the analyses of ``model`` receive: the prepared (train, val, test) splits (``splits`` when
    already loaded), the attribute classifier and the cached Inception reference, when they exist."""
    attrs = params.data.attributes
    train, val, test = splits or tuple(load_split(artifacts.PREPARED, s, attrs) for s in ("train", "val", "test"))
    return EvalContext(model=model, family=family, train=train, test=test, val=val, cfg=params.evaluate, rt=rt,
                       seed=params.seed, out_dir=out_dir, classifier=load_attribute_classifier(rt.device),
                       data_source=params.data.source, inception_reference=_inception_reference())


def evaluate_family(params: Params, family: str) -> dict[str, float]:
    rt = setup_runtime(params.runtime)
    seed_everything(params.seed)
    model = load_trained(family, rt.device)
    ctx = eval_context(params, family, model, rt, artifacts.report_dir(family))
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {"num_parameters": float(sum(p.numel() for p in model.parameters()))}
    digest = params_hash(params.seed, params.evaluate, model.cfg)
    # The model's config is logged too, so evaluate runs of a sweep (e.g. over β) compare in the MLflow UI.
    logged = {"seed": params.seed, "evaluate": to_dict(params.evaluate), "model": to_dict(model.cfg)}
    with start_run("evaluate", family, logged, digest, params.tracking.experiment) as tracker:
        tracker.log_dataset(artifacts.PREPARED, to_dict(params.data), context="evaluation")
        for capability, analysis in ANALYSES:
            if capability is None or capability in model.capabilities:
                t0 = time.perf_counter()
                metrics.update(analysis(ctx))
                # Peak RSS so far (Linux: KiB): tells which analysis sets the stage's memory high-water mark.
                log.info("%s: %s (%.1f s, peak RSS %.0f MB)", family, analysis.__name__, time.perf_counter() - t0,
                         resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            else:
                ctx.notes.append(f"{analysis.__name__} skipped: {family} declares no '{capability}' capability.")
        if artifacts.train_log(family).is_file():
            plot_training_curves(artifacts.train_log(family), ctx.out_dir / "training_curves.png", f"{family} training")
        artifacts.write_json(ctx.notes, artifacts.notes_file(family))
        artifacts.write_json(metrics, artifacts.metrics_file(family))
        tracker.log_metrics(metrics)
        tracker.log_metrics(ctx.timings)
        if ctx.timings:
            log.info("%s: %s", family, ", ".join(f"{k} {v:.1f}" for k, v in ctx.timings.items()))
        tracker.log_artifacts(ctx.out_dir, "reports")
        tracker.log_artifact(artifacts.metrics_file(family))
    return metrics
