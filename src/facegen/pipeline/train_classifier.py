"""The ``train_classifier`` stage: the attribute classifier every evaluation scores with.

Trained through the same ``fit`` loop as the families (resumable, per-epoch CSV as a DVC plot,
MLflow run ``train_classifier:classifier``), then scored per attribute on the test split, so the
report can say how far its judgements of edits and samples can be trusted.
"""
from __future__ import annotations

from functools import partial

import torch

from facegen import artifacts
from facegen.config import Params, to_dict
from facegen.data.dataset import FaceSplit, load_split
from facegen.models.checkpoint import save_classifier
from facegen.models.classifier import AttributeClassifier
from facegen.pipeline.session import session
from facegen.runtime import Runtime, eval_mode


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
    cfg, attrs = params.classifier, params.data.attributes
    with session(params) as s:
        train, val, test = (load_split(artifacts.PREPARED, split, attrs) for split in ("train", "val", "test"))
        model = s.rt.prepare(AttributeClassifier(attrs, cfg, params.data.image_size))
        logged = {"seed": params.seed, "attributes": list(attrs), "classifier": to_dict(cfg)}
        with s.tracked("train_classifier", "classifier", logged, params.seed, params.data, cfg) as run:
            run.tracker.log_dataset(artifacts.PREPARED, to_dict(params.data))
            run.fit(model, train, val, cfg.train, artifacts.CLASSIFIER_LOG, "classifier.train")
            metrics = attribute_accuracy(model, test, cfg.train.batch_size, s.rt)
            artifacts.write_json(metrics, artifacts.CLASSIFIER_METRICS)
            run.tracker.log_metrics(metrics)
            run.save(partial(save_classifier, model), artifacts.CLASSIFIER_FILE, artifacts.CLASSIFIER_METRICS)
    return metrics
