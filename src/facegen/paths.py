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
