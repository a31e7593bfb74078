"""Per-metric direction and tolerance, from ``metrics_tolerances.yaml`` (one file, two readers).

The report needs to know which way is better to mark the best family and write its analysis; the
CI gate needs the same direction plus how much worsening is noise. Keeping both in one repo file
means the two can never disagree about what "better" means.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from facegen.errors import ConfigError

SPECS_FILE = Path("metrics_tolerances.yaml")
Direction = Literal["higher", "lower", "none"]


@dataclass(frozen=True)
class MetricSpec:
    direction: Direction = "none"
    rel: float = 0.25
    abs: float = 0.0
    gate: bool = True
    summary: bool = True
    label: str = ""

    def allowed(self, old: float) -> float:
        """How far ``new`` may move the wrong way from ``old`` before it counts as a regression."""
        return max(self.abs, self.rel * abs(old))

    def worsening(self, old: float, new: float) -> float:
        """Signed move in the bad direction (negative = improvement); both ways count for ``none``."""
        if self.direction == "higher":
            return old - new
        if self.direction == "lower":
            return new - old
        return abs(new - old)

    def regressed(self, old: float, new: float) -> bool:
        return self.gate and self.worsening(old, new) > self.allowed(old)

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
    for key in ("rel", "abs"):
        if key in data and (not isinstance(data[key], (int, float)) or data[key] < 0):
            raise ConfigError(f"{where}.{key} must be a number >= 0, got {data[key]!r}")
    return replace(base, **data)


def _entry_base(default: MetricSpec, data: Any) -> MetricSpec:
    """What an entry inherits: the default's fields, minus its label, and minus its tolerance when
    the entry sets either part of one (``abs: 0.6`` alone must mean exactly 0.6, not max(0.6, default rel))."""
    base = replace(default, label="")
    if isinstance(data, dict) and ("rel" in data or "abs" in data):
        base = replace(base, rel=0.0, abs=0.0)
    return base


class MetricSpecs:
    """Lookup: exact name, else the first matching pattern in file order, else the default."""

    def __init__(self, default: MetricSpec, entries: dict[str, MetricSpec],
                 file_scale: dict[str, float] | None = None) -> None:
        self.default = default
        self.entries = entries
        self.file_scale = file_scale or {}

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
        """The gate's spec for ``"<file>.json:<metric>"``: the metric's, tolerance times the file's scale."""
        file, _, metric = key.partition(":")
        spec = self(metric.rsplit(".", 1)[-1])
        scale = self.file_scale.get(file, 1.0)
        return replace(spec, rel=spec.rel * scale, abs=spec.abs * scale) if scale != 1.0 else spec


def parse_specs(data: Any, source: str = str(SPECS_FILE)) -> MetricSpecs:
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping with `default` and `metrics`")
    unknown = sorted(set(data) - {"default", "metrics", "file_scale"})
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]} (allowed: default, metrics, file_scale)")
    default = _spec(MetricSpec(), data.get("default") or {}, f"{source}:default")
    metrics = data.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise ConfigError(f"{source}: metrics must map metric names to fields")
    entries = {str(k): _spec(_entry_base(default, v), v, f"{source}:metrics.{k}") for k, v in metrics.items()}
    file_scale = data.get("file_scale") or {}
    if not isinstance(file_scale, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in file_scale.values()):
        raise ConfigError(f"{source}: file_scale must map metric file names to numbers > 0, got {file_scale!r}")
    return MetricSpecs(default, entries, {str(k): float(v) for k, v in file_scale.items()})


def load_specs(path: Path = SPECS_FILE) -> MetricSpecs:
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the repository root")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    return parse_specs(data, str(path))
