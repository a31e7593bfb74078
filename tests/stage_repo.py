"""A throw-away repository layout for running real stages as subprocesses on tiny data.

Stage scripts resolve everything relative to the working directory (params.yaml, data/prepared,
models/, metrics/, runtime.state_dir), so a temp dir holding a tiny params file, tiny prepared
arrays and a link to ``stages/`` is a complete repo for them. Nothing here touches the real repo.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tests.conftest import ATTRS, make_split

REPO = Path(__file__).resolve().parents[1]
SPLIT_SIZES = {"train": 96, "val": 16, "test": 16}
SIZE = 16

TINY_PARAMS: dict[str, Any] = {
    "seed": 3,
    "runtime": {"device": "cpu", "precision": "fp32", "threads": 1},
    "data": {"image_size": SIZE, "attributes": list(ATTRS)},
    "models": {"vae": {"latent_dim": 4, "widths": [8, 16],
                       "train": {"epochs": 3, "batch_size": 16, "lr": 0.003}}},
}


def write_prepared(root: Path, splits: dict[str, int] = SPLIT_SIZES) -> None:
    """data/prepared as prepare writes it: {split}.npy uint8 NHWC + attrs.csv (image_id, split, attrs)."""
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (split, n) in enumerate(splits.items()):
        faces = make_split(n, SIZE, seed=i)
        np.save(prepared / f"{split}.npy", faces.images.numpy())
        table = pd.DataFrame(faces.attrs.numpy().astype(int), columns=list(ATTRS))
        table.insert(0, "split", split)
        table.insert(0, "image_id", [f"{split}_{j:04d}.jpg" for j in range(n)])
        rows.append(table)
    pd.concat(rows).to_csv(prepared / "attrs.csv", index=False)


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def make_repo(root: Path, overrides: dict[str, Any] | None = None, *, data: bool = True) -> Path:
    """A tiny stage-runnable repo in ``root``: params.yaml, stages/ (linked) and prepared data."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(merge(TINY_PARAMS, overrides or {}), sort_keys=False))
    if not (root / "stages").exists():
        (root / "stages").symlink_to(REPO / "stages")
    if data:
        write_prepared(root)
    return root


def stage_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"FACEGEN_REPO_ROOT": str(root), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns.db'}",
                "PYTHONWARNINGS": "ignore::DeprecationWarning", "OMP_NUM_THREADS": "1"})
    return env


def stage_cmd(stage: str, *args: str) -> list[str]:
    return [sys.executable, f"stages/{stage}.py", *args]


def run_stage(root: Path, stage: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``stages/<stage>.py`` in ``root`` to completion, capturing output."""
    return subprocess.run(stage_cmd(stage, *args), cwd=root, env=stage_env(root), capture_output=True,
                          text=True, timeout=timeout)
