"""The ``train_classifier`` stage: the attribute classifier every evaluation scores with.

Trained through the same ``fit`` loop as the families (resumable, per-epoch CSV as a DVC plot,
MLflow run ``train_classifier:classifier``), then scored per attribute on the test split, so the
report can say how far its judgements of edits and samples can be trusted.
"""
from __future__ import annotations

from pathlib import Path

import torch

from facegen import paths
from facegen.config import Params, params_hash, to_dict
from facegen.data.dataset import FaceSplit, load_split
from facegen.evaluation.evaluate import CLASSIFIER_FILE, write_json
from facegen.models.classifier import AttributeClassifier, save_classifier
from facegen.runtime import Runtime, eval_mode, seed_everything, setup_runtime
from facegen.tracking import start_run
from facegen.training.loop import fit

METRICS_FILE = paths.METRICS / "classifier.json"
TRAIN_LOG = paths.METRICS / "classifier_train.csv"


def attribute_accuracy(model: AttributeClassifier, split: FaceSplit, batch_size: int, rt: Runtime) -> dict[str, float]:
    """Per-attribute accuracy (``test_acc_<Name>``) and their mean (``test_acc_mean``)."""
    correct = torch.zeros(len(model.attributes))
    with eval_mode(model):
        for batch in split.batches(batch_size, rt.device, channels_last=rt.channels_last):
            pred = model.predict_proba(batch.images) > 0.5
            correct += (pred.float() == batch.attrs).float().sum(0).cpu()
    acc = correct / len(split)
    out = {f"test_acc_{name}": float(a) for name, a in zip(model.attributes, acc)}
    out["test_acc_mean"] = float(acc.mean())
    return out


def train_classifier(params: Params) -> dict[str, float]:
    cfg = params.classifier
    rt = setup_runtime(params.runtime)
    generator = seed_everything(params.seed)
    attrs = params.data.attributes
    train, val, test = (load_split(paths.PREPARED, s, attrs) for s in ("train", "val", "test"))
    model = rt.prepare(AttributeClassifier(attrs, cfg, params.data.image_size))
    digest = params_hash(params.seed, params.data, cfg)
    state_path = Path(params.runtime.state_dir) / f"train-classifier-{digest}.pt"
    logged = {"seed": params.seed, "attributes": list(attrs), "classifier": to_dict(cfg),
              "runtime": {"resolved_device": str(rt.device), "resolved_precision": rt.precision}}
    with start_run("train_classifier", "classifier", logged, digest, params.tracking.experiment) as tracker:
        fit(model, train, val, cfg.train, rt, generator, state_path=state_path, csv_path=TRAIN_LOG,
            on_epoch=lambda epoch, row, _images: tracker.log_metrics(row, step=epoch), params_key="classifier.train")
        metrics = attribute_accuracy(model, test, cfg.train.batch_size, rt)
        save_classifier(model, CLASSIFIER_FILE)
        write_json(metrics, METRICS_FILE)
        tracker.log_metrics(metrics)
        tracker.log_artifact(CLASSIFIER_FILE, "model")
        tracker.log_artifact(METRICS_FILE)
    state_path.unlink(missing_ok=True)
    return metrics
