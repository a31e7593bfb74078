"""Every metric declared once, in ``metrics_tolerances.yaml``: direction, section, headline, scale, label.

One entry puts a metric in the report (its section's table), and ``headline: true`` puts it in the
first-screen sentences, the win tally and the CI gate at once: the report, the gate and the tally
read the same file, so they can never disagree about what "better" means or which numbers count.
*How much* is noise is not typed here: it is measured (``metrics_noise.json``); the gate turns it
into a band (``gate:``, ``comparison.bands.GateRule``) and the report into paired decisions at the
level ``decision.alpha`` (``comparison.decision``).
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from facegen.config import load_yaml
from facegen.errors import ConfigError
from facegen.comparison.bands import GateRule

SPECS_FILE = Path("metrics_tolerances.yaml")
Direction = Literal["higher", "lower", "none"]
Scale = Literal["linear", "log"]
# The report's questions, in order (comparison.sections.SECTIONS gives each its title and prose).
SECTION_KEYS = ("reconstruction", "realism", "likelihood", "editing", "disentanglement", "cost")


@dataclass(frozen=True)
class MetricSpec:
    direction: Direction = "none"
    headline: bool = False  # first-screen sentence, win tally and CI gate
    section: str = ""       # which question's table shows it ("": the appendix only)
    scale: Scale = "linear"  # the gate's scale: log for ratios whose spread grows with their size
    label: str = ""
    # Another metric this one restates (e.g. the NLL row, whose decoder term is PSNR's ranking): its best
    # family does not win it again when it is also that metric's best (rows.restated).
    restates: str = ""

    def transform(self, value: float) -> float:
        """``value`` on the gating scale (``log``: -inf at 0 and below, i.e. infinitely far from any run)."""
        if self.scale == "log":
            return math.log(value) if value > 0 else -math.inf
        return value

    def worsening(self, old: float, new: float) -> float:
        """Signed move in the bad direction (negative = improvement); both ways count for ``none``."""
        if self.direction == "higher":
            return old - new
        if self.direction == "lower":
            return new - old
        return abs(new - old)


def _spec(base: MetricSpec, data: Any, where: str) -> MetricSpec:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of fields, got {data!r}")
    known = {f.name for f in fields(MetricSpec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]} (allowed: {', '.join(sorted(known))})")
    if data.get("direction", base.direction) not in ("higher", "lower", "none"):
        raise ConfigError(f"{where}.direction must be higher, lower or none, got {data['direction']!r}")
    if "headline" in data and not isinstance(data["headline"], bool):
        raise ConfigError(f"{where}.headline must be true or false, got {data['headline']!r}")
    if data.get("section", "") not in ("", *SECTION_KEYS):
        raise ConfigError(f"{where}.section must be one of {', '.join(SECTION_KEYS)}, got {data['section']!r}")
    if data.get("scale", "linear") not in ("linear", "log"):
        raise ConfigError(f"{where}.scale must be linear or log, got {data['scale']!r}")
    for key in ("label", "restates"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{where}.{key} must be a string, got {data[key]!r}")
    return replace(base, **data)


def _rule(data: Any, where: str) -> GateRule:
    known = {f.name for f in fields(GateRule)}
    if not isinstance(data, dict) or set(data) - known:
        raise ConfigError(f"{where} must map {', '.join(sorted(known))} to numbers, got {data!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in data.values()):
        raise ConfigError(f"{where}: every field must be a number >= 0, got {data!r}")
    try:
        return GateRule(**{k: float(v) for k, v in data.items()})
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None


def _alpha(data: Any, where: str) -> float:
    if not isinstance(data, dict) or set(data) - {"alpha"}:
        raise ConfigError(f"{where} must be a mapping with alpha, got {data!r}")
    alpha = data.get("alpha", DEFAULT_ALPHA)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(f"{where}.alpha must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


DEFAULT_ALPHA = 0.05


class MetricSpecs:
    """Lookup: exact name, else the first matching pattern in file order, else the default.

    ``rule``: the gate's band rule; ``alpha``: the level at which the report calls one family better
    than another (paired test over the recorded runs, Holm over the pairs of a row)."""

    def __init__(self, default: MetricSpec, entries: dict[str, MetricSpec], rule: GateRule | None = None,
                 alpha: float = DEFAULT_ALPHA) -> None:
        self.default = default
        self.entries = entries
        self.rule = rule or GateRule()
        self.alpha = alpha

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
    unknown = sorted(set(data) - {"default", "metrics", "gate", "decision"})
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]} (allowed: default, metrics, gate, decision)")
    default = _spec(MetricSpec(), data.get("default") or {}, f"{source}:default")
    metrics = data.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise ConfigError(f"{source}: metrics must map metric names to fields")
    # An entry inherits the default's fields except its label.
    entries = {str(k): _spec(replace(default, label=""), v, f"{source}:metrics.{k}") for k, v in metrics.items()}
    for name, spec in entries.items():
        if spec.headline and spec.direction == "none":
            raise ConfigError(f"{source}:metrics.{name}: a headline metric needs a direction (higher or lower)")
    return MetricSpecs(default, entries, _rule(data.get("gate") or {}, f"{source}:gate"),
                       _alpha(data.get("decision") or {}, f"{source}:decision"))


def load_specs(path: Path = SPECS_FILE) -> MetricSpecs:
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the repository root")
    return parse_specs(load_yaml(path), str(path))
