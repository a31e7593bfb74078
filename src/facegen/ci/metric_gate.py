"""CI gate: fresh ``metrics/*.json`` against the committed ones, within measured noise bands.

    python -m facegen.ci.metric_gate                      # baseline: git HEAD's metrics/
    python -m facegen.ci.metric_gate --baseline-dir DIR   # baseline: another folder of metric files

Directions and gating flags come from ``metrics_tolerances.yaml`` (shared with the report); each
metric's band comes from its measured run-to-run spread in ``metrics_noise.json`` (seeds x
precision, ``python -m benchmarks.bench_noise``) through the one rule in ``band_rule``
(``facegen.evaluation.noise``: a Student-t prediction bound, Bonferroni over the gated metrics). A gated
metric that moved the wrong way from its committed value by more than its band fails the run with
a table naming the committed value, the new one, the band and how many standard deviations away it
is; a gated metric with no measured spread fails too (the gate cannot tell noise from a
regression for it). Improvements and moves within the band pass; metrics or files that are new or
gone are listed but never fail (a new analysis must be able to land). ``dvc metrics diff`` output
is printed first, for humans. ``summary.json`` is skipped by default: it repeats the per-family
files, so checking it would report every regression twice.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from facegen.errors import FacegenError
from facegen.evaluation.metric_specs import SPECS_FILE, MetricSpecs, load_specs
from facegen.evaluation.noise import MIN_RUNS, NOISE_FILE, Noise, load_noise
from facegen.evaluation.comparison import fmt

Metrics = dict[str, float]  # "file.json:metric" -> value


@dataclass(frozen=True)
class Change:
    key: str
    old: float
    new: float
    band: float       # allowed worsening (nan: no measured spread)
    worsening: float  # signed move in the bad direction (negative = improvement)
    sd: float         # measured run-to-run standard deviation (nan: none)

    @property
    def sigmas(self) -> float:
        """How many measured standard deviations the move in the bad direction is."""
        if math.isnan(self.sd):
            return math.nan
        return self.worsening / self.sd if self.sd > 0 else math.copysign(math.inf, self.worsening)


def flatten_numeric(data: object, prefix: str = "") -> Metrics:
    """Numeric leaves of a JSON document as ``a.b.c -> value`` (bools and strings ignored)."""
    if isinstance(data, dict):
        out: Metrics = {}
        for k, v in data.items():
            out.update(flatten_numeric(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return {prefix: float(data)}
    return {}


def read_dir(directory: Path, skip: set[str]) -> Metrics:
    out: Metrics = {}
    for path in sorted(directory.glob("*.json")):
        if path.name not in skip:
            out.update({f"{path.name}:{k}": v for k, v in flatten_numeric(json.loads(path.read_text())).items()})
    return out


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def read_git(rev: str, directory: Path, skip: set[str]) -> Metrics | None:
    """Metric files committed at ``rev`` (None when there is no such commit, e.g. a fresh repo)."""
    try:
        names = _git("ls-tree", "--name-only", f"{rev}:{directory.as_posix()}").split()
    except (OSError, subprocess.CalledProcessError):
        return None
    out: Metrics = {}
    for name in names:
        if name.endswith(".json") and name not in skip:
            doc = json.loads(_git("show", f"{rev}:{directory.as_posix()}/{name}"))
            out.update({f"{name}:{k}": v for k, v in flatten_numeric(doc).items()})
    return out


@dataclass(frozen=True)
class Verdict:
    regressions: list[Change]  # gated, beyond the band (or non-finite where a number was)
    unmeasured: list[Change]   # gated, but no measured spread to judge by
    changes: list[Change]      # everything else that moved
    added: list[str]
    gone: list[str]
    gated: int                 # gated metrics with a measured spread: the m of the band rule


def gated_count(old: Metrics, new: Metrics, specs: MetricSpecs, noise: Noise) -> int:
    """How many gated metrics with a measured spread one gate run checks (the ``m`` of the band rule)."""
    return sum(1 for key in old.keys() & new.keys() if specs.for_key(key).gate and noise.measured(key))


def compare(old: Metrics, new: Metrics, specs: MetricSpecs, noise: Noise) -> Verdict:
    regressions, unmeasured, changes = [], [], []
    m = gated_count(old, new, specs, noise)
    for key in sorted(old.keys() & new.keys()):
        spec = specs.for_key(key)
        o, n = old[key], new[key]
        spread = noise.measured(key)
        measured = spread is not None
        band = specs.rule.band(spread, m, two_sided=spec.direction == "none") if measured else math.nan
        change = Change(key, o, n, band, spec.worsening(o, n), spread.sd if measured else math.nan)
        broke = math.isfinite(o) and not math.isfinite(n)
        if spec.gate and (broke or (measured and change.worsening > band)):
            regressions.append(change)
        elif spec.gate and not measured:
            unmeasured.append(change)
        elif o != n:
            changes.append(change)
    return Verdict(regressions, unmeasured, changes, sorted(new.keys() - old.keys()), sorted(old.keys() - new.keys()), m)


def table(rows: list[Change]) -> str:
    header = ("metric", "committed", "new", "band", "worsening", "sigmas")
    cells = [header] + [(c.key, fmt(c.old), fmt(c.new), fmt(c.band), fmt(c.worsening), f"{c.sigmas:.1f}")
                        for c in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _dvc_metrics_diff(rev: str) -> None:
    try:
        out = subprocess.run(["dvc", "metrics", "diff", rev], capture_output=True, text=True, timeout=120)
        print(f"$ dvc metrics diff {rev}\n{out.stdout or out.stderr}".rstrip() + "\n")
    except (OSError, subprocess.SubprocessError) as err:
        print(f"(dvc metrics diff unavailable: {err})\n")


def gate(new: Metrics, old: Metrics | None, specs: MetricSpecs, noise: Noise) -> int:
    """Print the verdict; return the exit code (0 pass, 1 regression or unmeasured gated metric)."""
    if old is None:
        print("metric gate: no committed baseline metrics (no commit yet?); nothing to compare, passing.")
        return 0
    v = compare(old, new, specs, noise)
    rule = specs.rule
    runs = sorted({s.n for s in noise.spreads.values()})
    ks = ", ".join(f"{rule.k(n, v.gated):.1f} at n = {n}" for n in runs if n >= MIN_RUNS)
    print(f"bands: max(k sd, max - min, {rule.floor_rel:g} |mean|) over the runs in {noise.source}, "
          f"k = sqrt(2) t_(n-1)(1 - {rule.false_alarm:g} / {v.gated} gated metrics) = {ks or 'none measured'} "
          f"(a no-change rerun on another CPU kind fails with probability <= {rule.false_alarm:g})\n")
    if v.changes:
        print(f"within the band, improved or not gated ({len(v.changes)}):\n{table(v.changes)}\n")
    if v.added:
        print(f"new metrics (not gated): {', '.join(v.added)}\n")
    if v.gone:
        print(f"metrics no longer produced (not gated): {', '.join(v.gone)}\n")
    failed = False
    if v.unmeasured:
        print(f"METRIC GATE FAILED: {len(v.unmeasured)} gated metric(s) without a measured spread in {noise.source} "
              f"(rerun `python -m benchmarks.bench_noise`, or mark them `gate: false` in {SPECS_FILE}): "
              f"{', '.join(c.key for c in v.unmeasured)}\n")
        failed = True
    if v.regressions:
        print(f"METRIC GATE FAILED: {len(v.regressions)} regression(s) beyond the measured noise band:\n"
              f"{table(v.regressions)}")
        failed = True
    if failed:
        return 1
    print(f"metric gate passed: {len(old.keys() & new.keys())} metrics compared, none regressed beyond its "
          f"measured noise band ({noise.source}).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    parser.add_argument("--baseline-rev", default="HEAD", help="git revision holding the committed metrics")
    parser.add_argument("--baseline-dir", type=Path, help="compare against this folder instead of git")
    parser.add_argument("--specs", type=Path, default=SPECS_FILE)
    parser.add_argument("--noise", type=Path, default=NOISE_FILE, help="measured run-to-run spread per metric")
    parser.add_argument("--skip", nargs="*", default=["summary.json"], help="metric files not to gate")
    parser.add_argument("--no-dvc", action="store_true", help="do not print `dvc metrics diff`")
    args = parser.parse_args(argv)
    try:
        specs = load_specs(args.specs)
        noise = load_noise(args.noise)
        skip = set(args.skip)
        if not args.metrics_dir.is_dir():
            raise FacegenError(f"{args.metrics_dir} not found: run `dvc repro` first")
        new = read_dir(args.metrics_dir, skip)
        if args.baseline_dir is not None:
            old = read_dir(args.baseline_dir, skip)
        else:
            if not args.no_dvc:
                _dvc_metrics_diff(args.baseline_rev)
            old = read_git(args.baseline_rev, args.metrics_dir, skip)
    except FacegenError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return gate(new, old, specs, noise)


if __name__ == "__main__":
    sys.exit(main())
