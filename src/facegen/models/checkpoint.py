"""Checkpoints: atomic writes, safe loads, and clear errors.

* Writes go to a temp file in the same directory and are renamed into place, so a kill or a full
  disk never leaves a truncated file where a good one was expected.
* Loads use ``torch.load(weights_only=True)``: a checkpoint is data, never code to execute.
  Everything we store is therefore tensors and plain Python containers (the config is stored as a
  dict and re-validated through config.py on load).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from facegen.config import MODEL_CONFIGS, from_dict, to_dict
from facegen.errors import CheckpointError, TrainingDivergedError
from facegen.models import build
from facegen.models.base import GenerativeModel

MODEL_FORMAT = "facegen-model/1"


def require_finite(state_dict: dict[str, Any], path: Path) -> None:
    """Refuse to write weights with NaN/inf: such a file would load fine and produce only noise."""
    bad = [name for name, t in state_dict.items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise TrainingDivergedError(
            f"refusing to write {path}: {len(bad)} of {len(state_dict)} tensors are not finite (e.g. {bad[0]}); "
            "training diverged: lower the learning rate (train.lr) in params.yaml and rerun")


def atomic_save(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` via temp file + fsync + rename.

    Every weights file (model, prior, classifier) stores its tensors under ``"state_dict"``; those are
    checked to be finite first, so no writer can save a diverged model.
    """
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        require_finite(obj["state_dict"], path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
