"""Every artifact name, and the one way to write an artifact: atomically.

The names are an interface: dvc.yaml declares them, the stages write them, the report and the CLI
read them, tests open them. Nothing else in the package spells a path under ``data/``, ``models/``,
``metrics/`` or ``reports/``.

Every write goes to a temporary file in the destination folder and is renamed into place, so a kill,
a full disk or a crash never leaves half a file where a good one was expected (a reader sees the old
file or the new one).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

PREPARED = Path("data/prepared")
CODES = Path("data/codes")
MODELS = Path("models")
METRICS = Path("metrics")
REPORTS = Path("reports")

# prepare
PREPARE_SUMMARY = PREPARED / "summary.json"
# train_classifier
CLASSIFIER_FILE = MODELS / "classifier" / "model.pt"
CLASSIFIER_METRICS = METRICS / "classifier.json"
CLASSIFIER_LOG = METRICS / "classifier_train.csv"
# reference: real-vs-real floors and the test faces' cached Inception features
REFERENCE = Path("data/reference")
REFERENCE_INCEPTION = REFERENCE / "inception_test.npy"
REFERENCE_METRICS = METRICS / "reference.json"
# extract_codes / fit_prior
CODES_META = CODES / "meta.json"
CODE_USAGE = CODES / "code_usage.png"
PRIOR_DIR = MODELS / "pixelcnn"  # the VQ-VAE prior (its family name is pixelcnn)
PRIOR_FILE = PRIOR_DIR / "model.pt"
PRIOR_METRICS = PRIOR_DIR / "metrics.json"
PRIOR_LOG = METRICS / "prior_train.csv"
# report
INDEX = REPORTS / "index.html"
MARKDOWN = REPORTS / "report.md"
SUMMARY = METRICS / "summary.json"
COMPARISON_RECONSTRUCTIONS = REPORTS / "comparison_reconstructions.png"
COMPARISON_SAMPLES = REPORTS / "comparison_samples.png"
COMPARISON_EDIT_CURVES = REPORTS / "comparison_edit_curves.png"
# The rows evaluate@<family> writes for the comparison figures (unlabelled image strips)
ROW_ORIGINALS = "row_originals.png"
ROW_RECONSTRUCTIONS = "row_reconstructions.png"
ROW_SAMPLES = "row_samples.png"
ROW_LABELS = "rows.json"  # how the reconstruction row was made (encoder or inversion)
NOTES = "notes.json"
EDIT_CURVES = "edit_curves.json"  # per family: success vs preservation over the strength sweep


def model_file(family: str) -> Path:
    return MODELS / family / "model.pt"


def train_log(family: str) -> Path:
    return METRICS / f"{family}_train.csv"


def metrics_file(family: str) -> Path:
    return METRICS / f"{family}.json"


def report_dir(family: str) -> Path:
    return REPORTS / family


def notes_file(family: str) -> Path:
    return report_dir(family) / NOTES


CACHE_ENV = "FACEGEN_CACHE_DIR"


def cache_dir() -> Path:
    """Where the CLI caches derived values (attribute directions, face templates).

    ``$FACEGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/facegen``, else ``~/.cache/facegen``. Entries are
    keyed by the files they derive from (path, size, mtime), so a retrained model or re-prepared data
    is never served a stale value; deleting the folder is always safe.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facegen"


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fh)`` on a temp file beside ``path``, fsync it, rename it over ``path``.

    The temp name starts with a dot and carries a random part, so concurrent writers (two ranks,
    two stages) never share one, and a crash leaves only a hidden leftover, never a truncated ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def write_json(data: Any, path: Path) -> Path:
    """Pretty, key-sorted JSON with a final newline (small diffs for committed metrics files)."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_npy(path: Path, array: Any) -> Path:
    import numpy as np

    return atomic_write(path, lambda fh: np.save(fh, array))


def atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` through :func:`atomic_write`.

    Every weights file (model, prior, classifier, resumable state) stores its tensors under
    ``"state_dict"``; those are checked to be finite first, so no writer can save a diverged model.
    Raises TrainingDivergedError naming the first non-finite tensor.
    """
    import torch

    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        _require_finite(obj["state_dict"], path)
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def _require_finite(state_dict: dict[str, Any], path: Path) -> None:
    """Refuse to write weights with NaN/inf: such a file would load fine and produce only noise."""
    import torch

    from facegen.errors import TrainingDivergedError

    bad = [name for name, t in state_dict.items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise TrainingDivergedError(
            f"refusing to write {path}: {len(bad)} of {len(state_dict)} tensors are not finite (e.g. {bad[0]}); "
            "training diverged: lower the learning rate (train.lr) in params.yaml and rerun")
