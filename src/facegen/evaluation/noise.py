"""Measured run-to-run noise of every metric, and the one rule that turns it into a tolerance band.

``metrics_noise.json`` (written by ``python -m benchmarks.bench_noise``) holds, per
``"<file>.json:<metric>"``, the mean, sample standard deviation (n-1), min, max and n of that metric
over several full trainings + evaluations of the default params: different seeds at the precision
``runtime.precision: auto`` picks, plus one run in the other precision (fp32 vs bf16 autocast), which
is what a rerun on another CPU kind changes. The CI gate reads its bands from here and
nowhere else; the report's tie rule reads the same file.

The band rule (``NoiseRule``), one for every metric::

    band = max(k * sd, max - min, floor_rel * |mean|)

``k * sd`` is the statistical part; with n = 4 runs an sd is itself uncertain by ~40 %, and one file
gates ~100 metrics at once, so ``k`` is large (4: a Gaussian metric whose true sd we estimated
right leaves the band on its bad side about once in 10^4 gate runs). The observed range is a floor
because a value already seen in a rerun of the same code is not a regression. ``floor_rel`` keeps
metrics that did not move in n runs (a saturated accuracy of 1.0) from being gated at zero width.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from facegen.errors import ConfigError

NOISE_FILE = Path("metrics_noise.json")
MIN_RUNS = 3  # fewer runs than this is no measured spread


@dataclass(frozen=True)
class Spread:
    """One metric's spread over runs: mean, sd (n-1), min, max, n."""

    mean: float
    sd: float
    min: float
    max: float
    n: int

    @property
    def range(self) -> float:
        return self.max - self.min


@dataclass(frozen=True)
class NoiseRule:
    """``band = max(k * sd, max - min, floor_rel * |mean|)``; see the module docstring for why.

    ``tie_z`` is the report's rule for two families' single-run values ``a`` and ``b`` of one metric:
    they separate (one is "best") only when ``|a - b| > tie_z * sqrt(sd_a^2 + sd_b^2)``, i.e. the
    gap is larger than ``tie_z`` standard deviations of the difference of two independent reruns
    (z = 2: a ~95 % two-sided test if the noise is Gaussian); otherwise the report says "tie".
    """

    k: float = 4.0
    floor_rel: float = 0.01
    tie_z: float = 2.0

    def band(self, spread: Spread) -> float:
        return max(self.k * spread.sd, spread.range, self.floor_rel * abs(spread.mean))

    def separated(self, a: float, b: float, sd_a: float, sd_b: float) -> bool:
        return abs(a - b) > self.tie_z * math.hypot(sd_a, sd_b)


def spread_of(values: list[float]) -> Spread:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) != len(values):
        raise ValueError(f"non-finite value among {values}")
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return Spread(statistics.fmean(finite), sd, min(finite), max(finite), len(finite))


def summarise(runs: list[Mapping[str, Mapping[str, float]]], skip: frozenset[str] = frozenset({"summary.json"})
              ) -> dict[str, dict[str, float]]:
    """``[{file: {metric: value}}, ...]`` (one dict per run) -> ``{"file:metric": {mean, sd, min, max, n}}``.

    A metric enters only with a numeric value in every run (a metric some runs lack is not comparable)."""
    keys: set[str] | None = None
    per_run: list[dict[str, float]] = []
    for run in runs:
        flat = {f"{file}:{name}": float(v) for file, doc in run.items() if file not in skip
                for name, v in doc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        per_run.append(flat)
        keys = set(flat) if keys is None else keys & set(flat)
    out = {}
    for key in sorted(keys or ()):
        s = spread_of([flat[key] for flat in per_run])
        out[key] = {"mean": s.mean, "sd": s.sd, "min": s.min, "max": s.max, "n": s.n}
    return out


class Noise:
    """The committed noise file: ``spread("vae.json:recon_mse")``."""

    def __init__(self, spreads: dict[str, Spread], source: str = str(NOISE_FILE)) -> None:
        self.spreads = spreads
        self.source = source

    def spread(self, key: str) -> Spread | None:
        return self.spreads.get(key)

    def measured(self, key: str) -> Spread | None:
        """The spread of ``key`` if it was measured over at least MIN_RUNS runs, else None: the one
        test of "is there a measured noise for this number", shared by the gate and the report."""
        spread = self.spreads.get(key)
        return spread if spread is not None and spread.n >= MIN_RUNS else None


def load_noise(path: Path = NOISE_FILE) -> Noise:
    if not path.is_file():
        raise ConfigError(f"{path} not found: run `python -m benchmarks.bench_noise` (about 50 min) to measure it")
    try:
        doc = json.loads(path.read_text())
        spreads = {key: Spread(float(v["mean"]), float(v["sd"]), float(v["min"]), float(v["max"]), int(v["n"]))
                   for key, v in doc["metrics"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{path} is not a noise file written by benchmarks.bench_noise ({err}): "
                          "rerun `python -m benchmarks.bench_noise`") from None
    return Noise(spreads, str(path))
