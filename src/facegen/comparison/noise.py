"""The recorded runs: every metric of the default pipeline over several seeds x precisions.

``metrics_noise.json`` (written by ``python -m benchmarks.bench_noise``) holds, per
``"<file>.json:<metric>"``, the value of every recorded run (``values``, in the order of ``runs``)
and their mean, sample standard deviation (n - 1), min, max and n. The runs train and evaluate the
default params with different seeds at the precision ``runtime.precision: auto`` picks, and with
some seeds in the other precision (fp32 vs bf16 autocast), which is what a rerun on another CPU
kind changes. One of them is the committed run (``committed``: its seed and precision; its values
are ``metrics/*.json``).

Two readers, one file: the report decides between families from the per-run values
(``comparison.decision``: paired differences, run by run), and the CI gate turns each gated
metric's spread into a band (``comparison.bands``).

The runs describe the models only while nothing that shapes them changed: the file records the
fingerprint of the params it was measured with (:func:`fingerprint`: everything but the seed, the
runtime and tracking), and ``stale`` names metric files whose code changed since (with the reason).
Either way, :meth:`Noise.values` then has nothing for them, and the report and the gate say why.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from facegen.config import Params, non_default, params_hash
from facegen.errors import ConfigError

NOISE_FILE = Path("metrics_noise.json")
MIN_RUNS = 3  # fewer runs than this is no measured spread
# The params sections that shape the recorded models; the seed (the runs vary it), the runtime (they vary the
# precision) and tracking (names only) are left out.
RECORDED_SECTIONS = ("data", "classifier", "models", "prior", "evaluate")


@dataclass(frozen=True)
class Spread:
    """One metric's spread over runs: mean, sd (n - 1), min, max, n."""

    mean: float
    sd: float
    min: float
    max: float
    n: int

    @property
    def range(self) -> float:
        return self.max - self.min


def spread_of(values: list[float]) -> Spread:
    """The spread of ``values``; ValueError on a non-finite value."""
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"non-finite value among {values}")
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return Spread(statistics.fmean(values), sd, min(values), max(values), len(values))


def recorded_params(params: Params) -> dict[str, Any]:
    """What the recorded runs must share with the models they describe: each of ``RECORDED_SECTIONS``
    less the params at their declared default (``config.non_default``), so adding a knob whose default
    keeps the old behaviour does not stale runs that the old code measured. Written into the noise
    file, so a later change can be located (:func:`changed_params`)."""
    return {section: non_default(getattr(params, section)) for section in RECORDED_SECTIONS}


def fingerprint(params: Params) -> str:
    """A short hash of :func:`recorded_params`: the recorded runs hold for ``params`` only if it matches."""
    return params_hash(*recorded_params(params).values())


def changed_params(recorded: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys (``"prior.temperature"``) whose value differs between two :func:`recorded_params`
    (a key on one side only counts: it left or took its default), sorted."""
    out: list[str] = []
    for key in sorted(set(recorded) | set(current)):
        a, b, name = recorded.get(key), current.get(key), f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += changed_params(a, b, f"{name}.")
        elif a != b:
            out.append(name)
    return out


def summarise(runs: list[Mapping[str, Mapping[str, float]]], skip: frozenset[str] = frozenset({"summary.json"})
              ) -> dict[str, dict[str, object]]:
    """``[{file: {metric: value}}, ...]`` (one dict per run) -> ``{"file:metric": {values, mean, sd, min, max, n}}``.

    A metric enters only with a numeric value in every run (a metric some runs lack is not comparable)."""
    keys: set[str] | None = None
    per_run: list[dict[str, float]] = []
    for run in runs:
        flat = {f"{file}:{name}": float(v) for file, doc in run.items() if file not in skip
                for name, v in doc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        per_run.append(flat)
        keys = set(flat) if keys is None else keys & set(flat)
    out: dict[str, dict[str, object]] = {}
    for key in sorted(keys or ()):
        values = [flat[key] for flat in per_run]
        s = spread_of(values)
        out[key] = {"values": values, "mean": s.mean, "sd": s.sd, "min": s.min, "max": s.max, "n": s.n}
    return out


class Noise:
    """The committed recorded runs: ``values("vae.json:recon_psnr")`` -> one value per run.

    ``runs``: ``[{"seed", "precision", ...}]`` in the order of every ``values`` list; ``committed``:
    the index of the committed run among them (None if it is not one of them); ``stale``: metric file
    (``"vae.json"``) -> why its runs no longer describe the committed models."""

    def __init__(self, values: dict[str, list[float]], runs: list[dict[str, object]], source: str = str(NOISE_FILE),
                 stale: dict[str, str] | None = None, committed: int | None = None,
                 kind: dict[str, object] | None = None) -> None:
        self._values = values
        self.runs = runs
        self.source = source
        self.stale = stale or {}
        self.committed = committed
        self.kind = kind or {}  # the committed run's machine kind (comparison.bands.machine_kind)

    def stale_reason(self, key: str) -> str | None:
        """Why ``key``'s file has no current runs (see the class docstring), else None."""
        return self.stale.get(key.partition(":")[0]) or self.stale.get("*")

    def values(self, key: str) -> list[float] | None:
        """The per-run values of ``key`` if recorded over at least MIN_RUNS runs of the models now
        committed, else None: the one test of "is there a measured noise for this number", shared
        by the report, the gate and the known strengths."""
        values = self._values.get(key)
        return values if values is not None and len(values) >= MIN_RUNS and not self.stale_reason(key) else None

    def measured(self, key: str) -> Spread | None:
        values = self.values(key)
        return spread_of(values) if values is not None else None

    def committed_value(self, key: str) -> float | None:
        """The committed run's recorded value of ``key`` (None when the committed run is not recorded)."""
        values = self._values.get(key)
        return values[self.committed] if values is not None and self.committed is not None else None

    def run(self, index: int) -> dict[str, float]:
        """Every recorded metric of run ``index`` as ``{"file:metric": value}``."""
        return {key: values[index] for key, values in self._values.items()}

    def without(self, index: int) -> Noise:
        """The same record less run ``index`` (leave-one-out: a run must not widen its own band)."""
        committed = None if self.committed in (None, index) else self.committed - (self.committed > index)
        return Noise({k: v[:index] + v[index + 1:] for k, v in self._values.items()},
                     self.runs[:index] + self.runs[index + 1:], self.source, self.stale, committed, self.kind)

    def with_stale(self, file: str, reason: str) -> Noise:
        return Noise(self._values, self.runs, self.source, {**self.stale, file: reason}, self.committed, self.kind)


def _committed_index(runs: list[dict[str, object]], committed: dict[str, object]) -> int | None:
    return next((i for i, r in enumerate(runs)
                 if r.get("seed") == committed.get("seed") and r.get("precision") == committed.get("precision")), None)


def load_noise(path: Path = NOISE_FILE, params: Params | None = None) -> Noise:
    """Read the recorded runs; with ``params``, every file is stale unless the runs were measured
    with the same :func:`fingerprint`. ConfigError naming the file when it is missing or malformed."""
    if not path.is_file():
        raise ConfigError(f"{path} not found: run `python -m benchmarks.bench_noise` (about 2 h) to record the runs")
    try:
        doc = json.loads(path.read_text())
        values = {str(key): [float(v) for v in entry["values"]] for key, entry in doc["metrics"].items()}
        runs = [dict(r) for r in doc["runs"]]
        stale = {str(k): str(v) for k, v in doc.get("stale", {}).items()}
        committed = dict(doc.get("committed", {}))
        recorded = doc.get("params_fingerprint")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ConfigError(f"{path} is not a noise file written by benchmarks.bench_noise ({err}): "
                          "rerun `python -m benchmarks.bench_noise`") from None
    if any(len(v) != len(runs) for v in values.values()):
        raise ConfigError(f"{path}: a metric has not one value per run; rerun `python -m benchmarks.bench_noise`")
    noise = Noise(values, runs, str(path), stale, _committed_index(runs, committed), dict(committed.get("kind", {})))
    if params is not None and recorded != (current := fingerprint(params)):
        noise = noise.with_stale("*", f"the recorded runs are of other params (fingerprint {recorded}, "
                                      f"params.yaml now {current}): rerun `python -m benchmarks.bench_noise`")
    return noise
