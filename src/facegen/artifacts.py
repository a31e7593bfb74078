"""Where stages read and write. These names are part of the interface (dvc.yaml, report, tests)."""
from __future__ import annotations

from pathlib import Path

PREPARED = Path("data/prepared")
CODES = Path("data/codes")
MODELS = Path("models")
METRICS = Path("metrics")
REPORTS = Path("reports")


def model_file(family: str) -> Path:
    return MODELS / family / "model.pt"


def train_log(family: str) -> Path:
    return METRICS / f"{family}_train.csv"


def metrics_file(family: str) -> Path:
    return METRICS / f"{family}.json"


def report_dir(family: str) -> Path:
    return REPORTS / family


CACHE_ENV = "FACEGEN_CACHE_DIR"


def cache_dir() -> Path:
    """Where the CLI caches derived values (attribute directions, face templates).

    ``$FACEGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/facegen``, else ``~/.cache/facegen``. Entries are
    keyed by the files they derive from (path, size, mtime), so a retrained model or re-prepared data
    is never served a stale value; deleting the folder is always safe.
    """
    import os

    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facegen"
