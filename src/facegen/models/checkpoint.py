"""All checkpoint I/O: trained families, the PixelCNN prior and the attribute classifier.

* Writes go through ``artifacts.atomic_save`` (temp file + rename, finite weights only), so a kill
  or a full disk never leaves a truncated file where a good one was expected.
* Loads use ``torch.load(weights_only=True)``: a checkpoint is data, never code to execute.
  Everything we store is therefore tensors and plain Python containers (the config is stored as a
  dict and re-validated through config.py on load).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from facegen import artifacts
from facegen.artifacts import atomic_save
from facegen.config import MODEL_CONFIGS, ClassifierConfig, PriorConfig, from_dict, to_dict
from facegen.errors import CheckpointError
from facegen.models import build
from facegen.models.base import GenerativeModel
from facegen.models.classifier import AttributeClassifier
from facegen.models.pixelcnn import PixelCNNPrior

MODEL_FORMAT = "facegen-model/1"
PRIOR_FORMAT = "facegen-prior/1"
CLASSIFIER_FORMAT = "facegen-classifier/1"


def safe_load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} not found: run the stage that trains it (`dvc repro`)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, pickle of arbitrary objects, bad magic number...
        raise CheckpointError(f"{path} is not a readable facegen checkpoint ({type(err).__name__}); "
                              "delete it and rerun the stage that writes it") from None
    if not isinstance(obj, dict) or "format" not in obj:
        raise CheckpointError(f"{path} is not a facegen checkpoint; delete it and rerun the stage that writes it")
    return obj


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """load_state_dict with an error that says *which* checkpoint does not fit and what to do."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"{path} was saved from a different architecture ({first}); "
                              "delete it, then retrain it with the current code and params (`dvc repro` rebuilds a "
                              "missing output; without deleting, it may consider the stage up to date)") from None


def load_checkpoint(path: Path, fmt: str, what: str, device: str | torch.device = "cpu") -> dict[str, Any]:
    """``safe_load`` plus the format check: a model, prior and classifier file are not interchangeable."""
    ckpt = safe_load(path, device)
    if ckpt.get("format") != fmt:
        raise CheckpointError(f"{path} is a {ckpt.get('format', 'unknown')} file, not {what}")
    return ckpt


def save_model(model: GenerativeModel, path: Path) -> None:
    atomic_save({
        "format": MODEL_FORMAT,
        "family": model.family,
        "image_size": model.image_size,
        "config": to_dict(model.cfg),
        "state_dict": model.state_dict(),
    }, path)


def load_model(path: Path, device: str | torch.device = "cpu") -> GenerativeModel:
    """Rebuild a trained family from its checkpoint alone (config travels with the weights)."""
    ckpt = load_checkpoint(path, MODEL_FORMAT, "a trained model", device)
    family = ckpt["family"]
    cfg = from_dict(MODEL_CONFIGS[family], ckpt["config"], f"{path}:config")
    model = build(family, cfg, ckpt["image_size"])
    load_weights(model, ckpt["state_dict"], path)
    return model.to(device).eval()


def save_prior(prior: PixelCNNPrior, path: Path) -> None:
    atomic_save({
        "format": PRIOR_FORMAT, "config": to_dict(prior.cfg), "num_codes": prior.num_codes,
        "grid": list(prior.grid), "attr_names": list(prior.attr_names),
        "attr_rows": prior.attr_rows.cpu(), "attr_probs": prior.attr_probs.cpu(),
        "state_dict": prior.state_dict(),
    }, path)


def load_prior(path: Path, device: str | torch.device = "cpu") -> PixelCNNPrior:
    ckpt = load_checkpoint(path, PRIOR_FORMAT, "a PixelCNN prior", device)
    cfg = from_dict(PriorConfig, ckpt["config"], f"{path}:config")
    prior = PixelCNNPrior(cfg, ckpt["num_codes"], tuple(ckpt["grid"]), tuple(ckpt["attr_names"]),
                          ckpt["attr_rows"], ckpt["attr_probs"])
    load_weights(prior, ckpt["state_dict"], path)
    return prior.to(device).eval()


def save_classifier(model: AttributeClassifier, path: Path) -> None:
    atomic_save({"format": CLASSIFIER_FORMAT, "attributes": list(model.attributes), "image_size": model.image_size,
                 "config": to_dict(model.cfg), "state_dict": model.state_dict()}, path)


def load_classifier(path: Path, device: str | torch.device = "cpu") -> AttributeClassifier:
    """The trained classifier in eval mode, frozen (it is an instrument, never trained further)."""
    ckpt = load_checkpoint(path, CLASSIFIER_FORMAT, "an attribute classifier", device)
    cfg = from_dict(ClassifierConfig, ckpt["config"], f"{path}:config")
    model = AttributeClassifier(ckpt["attributes"], cfg, ckpt["image_size"])
    load_weights(model, ckpt["state_dict"], path)
    return model.to(device).eval().requires_grad_(False)


def in_models_dir(path: Path, models_dir: Path) -> Path:
    """An artifact path under ``models/`` (artifacts.py) relocated under another ``models_dir``."""
    return models_dir / path.relative_to(artifacts.MODELS)


def with_prior(model: GenerativeModel, models_dir: Path = artifacts.MODELS) -> GenerativeModel:
    """Attach the prior a later stage fitted, for a family that samples through one (``attach_prior``).

    The VQ-VAE does not know where its prior lives; this loader composes the two stages (as
    taming-transformers' two-stage model owns its first stage). Without a prior file the model
    still encodes and decodes, and ``sample`` says which stage to run.
    """
    attach = getattr(model, "attach_prior", None)
    prior_file = in_models_dir(artifacts.PRIOR_FILE, models_dir)
    if attach is not None and prior_file.is_file():
        attach(load_prior(prior_file, next(model.parameters()).device))
    return model


def load_trained(family: str, device: str | torch.device = "cpu", models_dir: Path = artifacts.MODELS) -> GenerativeModel:
    """A trained family ready to sample: its checkpoint plus, where it has one, its prior."""
    return with_prior(load_model(in_models_dir(artifacts.model_file(family), models_dir), device), models_dir)


def load_attribute_classifier(device: str | torch.device = "cpu",
                              models_dir: Path = artifacts.MODELS) -> AttributeClassifier | None:
    """The pipeline's classifier, or None before ``train_classifier`` has run (analyses then say so)."""
    path = in_models_dir(artifacts.CLASSIFIER_FILE, models_dir)
    return load_classifier(path, device) if path.is_file() else None
