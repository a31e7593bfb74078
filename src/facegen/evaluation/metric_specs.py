"""Per-metric direction and gating flags, from ``metrics_tolerances.yaml`` (one file, two readers).

The report needs to know which way is better to mark the best family and write its analysis; the
CI gate needs the same direction plus how much worsening is noise. Keeping both in one repo file
means the two can never disagree about what "better" means. *How much* is noise is not typed here:
it is measured (``metrics_noise.json``) and turned into a band by the one rule in ``band_rule``
(``facegen.evaluation.noise.NoiseRule``).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from facegen.config import load_yaml
from facegen.errors import ConfigError
from facegen.evaluation.noise import NoiseRule

SPECS_FILE = Path("metrics_tolerances.yaml")
Direction = Literal["higher", "lower", "none"]


@dataclass(frozen=True)
class MetricSpec:
    direction: Direction = "none"
    gate: bool = True
    summary: bool = True
    label: str = ""
    # Another metric this one restates (e.g. the NLL row, whose decoder term is PSNR's ranking): its best
    # family does not win it again when it is also that metric's best (comparison.restated).
    restates: str = ""

    def worsening(self, old: float, new: float) -> float:
        """Signed move in the bad direction (negative = improvement); both ways count for ``none``."""
        if self.direction == "higher":
            return old - new
        if self.direction == "lower":
            return new - old
        return abs(new - old)

    def best(self, values: dict[str, float]) -> str | None:
        """Key of the single best value; None without a direction, without values, or on a tie."""
        if self.direction == "none" or not values:
            return None
        ranked = sorted(values, key=values.__getitem__, reverse=self.direction == "higher")
        if len(ranked) > 1 and values[ranked[0]] == values[ranked[1]]:
            return None
        return ranked[0]


def _spec(base: MetricSpec, data: Any, where: str) -> MetricSpec:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of fields, got {data!r}")
    known = {f.name for f in fields(MetricSpec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]} (allowed: {', '.join(sorted(known))})")
    if data.get("direction", base.direction) not in ("higher", "lower", "none"):
        raise ConfigError(f"{where}.direction must be higher, lower or none, got {data['direction']!r}")
    for key in ("gate", "summary"):
        if key in data and not isinstance(data[key], bool):
            raise ConfigError(f"{where}.{key} must be true or false, got {data[key]!r}")
    for key in ("label", "restates"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{where}.{key} must be a string, got {data[key]!r}")
    return replace(base, **data)


def _rule(data: Any, where: str) -> NoiseRule:
    known = {f.name for f in fields(NoiseRule)}
    if not isinstance(data, dict) or set(data) - known:
        raise ConfigError(f"{where} must map {', '.join(sorted(known))} to numbers, got {data!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in data.values()):
        raise ConfigError(f"{where}: every field must be a number >= 0, got {data!r}")
    try:
        return NoiseRule(**{k: float(v) for k, v in data.items()})
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None


class MetricSpecs:
    """Lookup: exact name, else the first matching pattern in file order, else the default."""

    def __init__(self, default: MetricSpec, entries: dict[str, MetricSpec], rule: NoiseRule | None = None) -> None:
        self.default = default
        self.entries = entries
        self.rule = rule or NoiseRule()

    def __call__(self, name: str) -> MetricSpec:
        if name in self.entries:
            return self.entries[name]
        for pattern, spec in self.entries.items():
            if fnmatch.fnmatchcase(name, pattern):
                return spec
        return self.default

    def label(self, name: str) -> str:
        return self(name).label or name

    def for_key(self, key: str) -> MetricSpec:
        """The spec of ``"<file>.json:<metric>"`` (the gate's keys)."""
        return self(key.partition(":")[2].rsplit(".", 1)[-1])


def parse_specs(data: Any, source: str = str(SPECS_FILE)) -> MetricSpecs:
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping with `default` and `metrics`")
    unknown = sorted(set(data) - {"default", "metrics", "band_rule"})
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]} (allowed: default, metrics, band_rule)")
    default = _spec(MetricSpec(), data.get("default") or {}, f"{source}:default")
    metrics = data.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise ConfigError(f"{source}: metrics must map metric names to fields")
    # An entry inherits the default's fields except its label.
    entries = {str(k): _spec(replace(default, label=""), v, f"{source}:metrics.{k}") for k, v in metrics.items()}
    return MetricSpecs(default, entries, _rule(data.get("band_rule") or {}, f"{source}:band_rule"))


def load_specs(path: Path = SPECS_FILE) -> MetricSpecs:
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the repository root")
    return parse_specs(load_yaml(path), str(path))
