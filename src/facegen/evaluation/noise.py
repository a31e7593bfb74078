"""Measured run-to-run noise of every metric, and the one rule that turns it into a tolerance band.

``metrics_noise.json`` (written by ``python -m benchmarks.bench_noise``) holds, per
``"<file>.json:<metric>"``, the mean, sample standard deviation (n-1), min, max and n of that metric
over several full trainings + evaluations of the default params: different seeds at the precision
``runtime.precision: auto`` picks, plus one run in the other precision (fp32 vs bf16 autocast), which
is what a rerun on another CPU kind changes. The CI gate reads its bands from here and
nowhere else; the report's tie rule reads the same file.

The band rule (``NoiseRule``), one for every metric::

    band = max(k * sd, max - min, floor_rel * |mean|),   k = sqrt(2) * t_{n-1}(1 - false_alarm / m)

``k * sd`` is the statistical part. Under "nothing changed but the CPU kind" a fresh run and the
committed run are two draws of the same metric, so their difference over ``sd * sqrt(2)`` follows
Student's t with n - 1 degrees of freedom (``sd`` is itself estimated from the n runs; with n = 3 it
has two degrees of freedom and is often far too small). ``m`` is the number of gated metrics one
gate run checks, so the one-sided tail ``false_alarm / m`` per metric (half that for a metric gated
both ways) bounds the chance that a no-change rerun fails *any* of them by ``false_alarm``
(Bonferroni; metrics are correlated, so the real rate is lower). With the fixed ``k = 4`` this
replaced and n = 3 runs, an independent rerun failed one of ~100 Gaussian metrics about 4 times per
gate run (simulated; ``tests/test_gate.py`` keeps the check), which is how a fresh clone on another
CPU kind failed the gate. The observed range is a floor because a value already seen in a rerun of
the same code is not a regression. ``floor_rel`` keeps metrics that did not move in n runs (a
saturated accuracy of 1.0) from being gated at zero width.
"""
from __future__ import annotations

import functools
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

    ``false_alarm`` is the chance, per gate run, that a rerun which changed nothing but the
    arithmetic (another CPU kind, another precision) fails some gated metric.

    ``tie_z`` is the report's rule for two families' single-run values ``a`` and ``b`` of one metric:
    they separate (one is "best") only when ``|a - b| > tie_z * sqrt(sd_a^2 + sd_b^2)``, i.e. the
    gap is larger than ``tie_z`` standard deviations of the difference of two independent reruns
    (z = 2: a ~95 % two-sided test if the noise is Gaussian); otherwise the report says "tie".
    """

    false_alarm: float = 0.05
    floor_rel: float = 0.01
    tie_z: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.false_alarm < 1:
            raise ValueError(f"false_alarm must lie in (0, 1), got {self.false_alarm}")

    def k(self, n: int, gated: int, two_sided: bool = False) -> float:
        """Band width in measured sds for a spread over ``n`` runs when ``gated`` metrics are checked."""
        return prediction_k(n, max(gated, 1), self.false_alarm / (2 if two_sided else 1))

    def band(self, spread: Spread, gated: int, two_sided: bool = False) -> float:
        """Allowed worsening of one metric; ``gated``: how many metrics the gate run checks."""
        return max(self.k(spread.n, gated, two_sided) * spread.sd, spread.range, self.floor_rel * abs(spread.mean))

    def separated(self, a: float, b: float, sd_a: float, sd_b: float) -> bool:
        return abs(a - b) > self.tie_z * math.hypot(sd_a, sd_b)


@functools.lru_cache(maxsize=None)
def prediction_k(n: int, gated: int, false_alarm: float) -> float:
    """``sqrt(2) * t_{n-1}(1 - false_alarm / gated)``: the one-sided Bonferroni prediction bound for the
    difference of two new draws, in units of an sd estimated from ``n`` runs (``n >= 2``)."""
    if n < 2:
        raise ValueError(f"an sd needs at least 2 runs, got n = {n}")
    from scipy.stats import t  # local import: scipy.stats costs ~0.5 s, and only the gate needs it

    return math.sqrt(2.0) * float(t.ppf(1.0 - false_alarm / gated, n - 1))


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
    """The committed noise file: ``spread("vae.json:recon_mse")``.

    ``stale`` maps a metric file (``"vae.json"``) to why its measured spreads no longer describe
    the committed models (e.g. the family's objective changed since the runs): its metrics then
    have no measured spread until the noise is re-measured, and the gate reports them ungated with
    that reason instead of failing on a band measured for other models."""

    def __init__(self, spreads: dict[str, Spread], source: str = str(NOISE_FILE),
                 stale: dict[str, str] | None = None) -> None:
        self.spreads = spreads
        self.source = source
        self.stale = stale or {}

    def spread(self, key: str) -> Spread | None:
        return self.spreads.get(key)

    def stale_reason(self, key: str) -> str | None:
        """Why ``key``'s file has no current spread (see the class docstring), else None."""
        return self.stale.get(key.partition(":")[0])

    def measured(self, key: str) -> Spread | None:
        """The spread of ``key`` if it was measured over at least MIN_RUNS runs on the models now
        committed, else None: the one test of "is there a measured noise for this number", shared
        by the gate and the report."""
        spread = self.spreads.get(key)
        return spread if spread is not None and spread.n >= MIN_RUNS and not self.stale_reason(key) else None


def load_noise(path: Path = NOISE_FILE) -> Noise:
    if not path.is_file():
        raise ConfigError(f"{path} not found: run `python -m benchmarks.bench_noise` (about 50 min) to measure it")
    try:
        doc = json.loads(path.read_text())
        spreads = {key: Spread(float(v["mean"]), float(v["sd"]), float(v["min"]), float(v["max"]), int(v["n"]))
                   for key, v in doc["metrics"].items()}
        stale = {str(k): str(v) for k, v in doc.get("stale", {}).items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ConfigError(f"{path} is not a noise file written by benchmarks.bench_noise ({err}): "
                          "rerun `python -m benchmarks.bench_noise`") from None
    return Noise(spreads, str(path), stale)
