"""CI gate: fresh ``metrics/*.json`` against the committed ones, with per-metric tolerances.

    python -m facegen.ci.metric_gate                      # baseline: git HEAD's metrics/
    python -m facegen.ci.metric_gate --baseline-dir DIR   # baseline: another folder of metric files

Directions and tolerances come from ``metrics_tolerances.yaml`` (shared with the report). A metric
that moved the wrong way by more than its allowance fails the run with a table naming the metric,
old, new and allowed values; improvements and noise within tolerance pass; metrics or files that
are new or gone are listed but never fail (a new analysis must be able to land). ``dvc metrics
diff`` output is printed first, for humans. ``summary.json`` is skipped by default: it repeats
the per-family files, so checking it would report every regression twice.
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
from facegen.reporting.compare import fmt

Metrics = dict[str, float]  # "file.json:metric" -> value


@dataclass(frozen=True)
class Change:
    key: str
    old: float
    new: float
    allowed: float
    worsening: float


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


def compare(old: Metrics, new: Metrics, specs: MetricSpecs) -> tuple[list[Change], list[Change], list[str], list[str]]:
    """(regressions, other changes, new keys, missing keys)."""
    regressions, changes = [], []
    for key in sorted(old.keys() & new.keys()):
        spec = specs.for_key(key)  # "vae.json:recon_mse": recon_mse's tolerance x vae.json's scale
        o, n = old[key], new[key]
        change = Change(key, o, n, spec.allowed(o), spec.worsening(o, n))
        broke = math.isfinite(o) and not math.isfinite(n)
        if spec.gate and (broke or spec.regressed(o, n)):
            regressions.append(change)
        elif o != n:
            changes.append(change)
    return regressions, changes, sorted(new.keys() - old.keys()), sorted(old.keys() - new.keys())


def table(rows: list[Change]) -> str:
    header = ("metric", "old", "new", "allowed worsening", "worsening")
    cells = [header] + [(c.key, fmt(c.old), fmt(c.new), fmt(c.allowed), fmt(c.worsening)) for c in rows]
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


def gate(new: Metrics, old: Metrics | None, specs: MetricSpecs) -> int:
    """Print the verdict; return the exit code (0 pass, 1 regression)."""
    if old is None:
        print("metric gate: no committed baseline metrics (no commit yet?); nothing to compare, passing.")
        return 0
    regressions, changes, added, gone = compare(old, new, specs)
    if changes:
        print(f"within tolerance or improved ({len(changes)}):\n{table(changes)}\n")
    if added:
        print(f"new metrics (not gated): {', '.join(added)}\n")
    if gone:
        print(f"metrics no longer produced (not gated): {', '.join(gone)}\n")
    if regressions:
        print(f"METRIC GATE FAILED: {len(regressions)} regression(s) beyond tolerance ({SPECS_FILE}):\n"
              f"{table(regressions)}")
        return 1
    print(f"metric gate passed: {len(old.keys() & new.keys())} metrics compared, none regressed beyond tolerance.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    parser.add_argument("--baseline-rev", default="HEAD", help="git revision holding the committed metrics")
    parser.add_argument("--baseline-dir", type=Path, help="compare against this folder instead of git")
    parser.add_argument("--specs", type=Path, default=SPECS_FILE)
    parser.add_argument("--skip", nargs="*", default=["summary.json"], help="metric files not to gate")
    parser.add_argument("--no-dvc", action="store_true", help="do not print `dvc metrics diff`")
    args = parser.parse_args(argv)
    try:
        specs = load_specs(args.specs)
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
    return gate(new, old, specs)


if __name__ == "__main__":
    sys.exit(main())
