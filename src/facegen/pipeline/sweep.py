"""A collected parameter sweep's image grids in MLflow: one run ``sweep:<family>`` whose image series
(``samples``, ``reconstructions``, ``traversal``) step through the swept value, so the MLflow UI's
image view steps through β as the report's figure does through its metrics::

    python -m facegen.reporting.sweep     # sweeps/beta_vae.json from `dvc exp show --json`
    python -m facegen.pipeline.sweep      # [--family beta_vae] its grids -> MLflow, step = β

Each point of ``sweeps/<family>.json`` names the experiment commit it came from (``rev``); its grids
are read from that commit's outputs through DVC (``dvc.api.read``, from the local cache where
``dvc exp run`` left them), so they are the images DVC recorded for that value, not whatever a
later run left in the workspace. MLflow steps are integers: the swept value when every value is
whole (β = 1, 2, 4, 8, 16), else the value's rank (0, 1, ...); the run's params list the values either
way. The same grids are DVC image plots (dvc.yaml), so ``dvc plots diff exp-a exp-b`` compares two
experiments directly.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from facegen import artifacts
from facegen.config import Params, params_hash
from facegen.errors import FacegenError
from facegen.pipeline.stage import stage_main
from facegen.reporting.sweep import SWEEPS
from facegen.tracking import start_run

GRIDS = ("samples.png", "reconstructions.png", "traversal.png")  # the grids dvc.yaml declares as image plots


def steps(values: list[float]) -> list[int]:
    """MLflow image steps for the swept values: the values themselves when whole, else their ranks."""
    if all(float(v).is_integer() for v in values):
        return [int(v) for v in values]
    return list(range(len(values)))


def read_grid(path: Path, rev: str) -> np.ndarray | None:
    """``path`` as an HxWx3 uint8 array at commit ``rev`` (``workspace``: on disk); None where it is absent."""
    if rev == "workspace":
        data = path.read_bytes() if path.is_file() else None
    else:
        import dvc.api  # local import: dvc costs seconds to import, and only this command reads revisions

        try:
            data = dvc.api.read(path.as_posix(), repo=".", rev=rev, mode="rb")
        except Exception:  # noqa: BLE001 - not an output at that commit (a family without traversals) or not cached
            data = None
    return None if data is None else np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def log_sweep_grids(params: Params, family: str) -> dict[str, list[int]]:
    """Log every point's grids to one MLflow run; returns the steps logged per grid series."""
    path = SWEEPS / f"{family}.json"
    if not path.is_file():
        raise FacegenError(f"{path} not found: collect the sweep first (`python -m facegen.reporting.sweep --family {family}`)")
    sweep = json.loads(path.read_text())
    points = sweep["points"]
    if len(points) < 2:
        raise FacegenError(f"{path} holds {len(points)} value(s) of {sweep['param']}: run at least two "
                           "(docs/evaluation.md, β sweep), then collect them again")
    if missing := [p["name"] for p in points if "rev" not in p]:
        raise FacegenError(f"{path}: points {missing} name no commit (collected by an older facegen): "
                           f"collect the sweep again (`python -m facegen.reporting.sweep --family {family}`)")
    values = [p["value"] for p in points]
    at = steps(values)
    logged = {"param": sweep["param"], "values": values, "experiments": [p["name"] for p in points],
              "steps": {str(s): v for s, v in zip(at, values)}}
    found: dict[str, list[int]] = {}
    with start_run("sweep", family, logged, params_hash(sweep), params.tracking.experiment) as tracker:
        for point, step in tqdm(list(zip(points, at)), desc=f"logging {family} sweep grids", disable=None):
            for name in GRIDS:
                grid = read_grid(artifacts.report_dir(family) / name, point["rev"])
                if grid is not None:
                    tracker.log_image_step(grid, key=Path(name).stem, step=step)
                    found.setdefault(Path(name).stem, []).append(step)
    return found


def main(params: Params, args: argparse.Namespace) -> None:
    found = log_sweep_grids(params, args.family)
    if not found:
        raise FacegenError(f"no grid of reports/{args.family}/ could be read at the sweep's commits: run "
                           "the experiments with `dvc exp run` in this repository (their outputs live in its cache)")
    print(f"logged to MLflow run sweep:{args.family}: "
          + "; ".join(f"{key} at steps {', '.join(map(str, s))}" for key, s in found.items()))


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", default="beta_vae", help="the swept family (default: %(default)s)")


if __name__ == "__main__":
    stage_main(__doc__.splitlines()[0], main, add_args)
