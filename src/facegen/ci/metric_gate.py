"""CI gate: fresh ``metrics/*.json`` against the committed ones, within measured noise bands.

    python -m facegen.ci.metric_gate                      # baseline: git HEAD's metrics/
    python -m facegen.ci.metric_gate --baseline-dir DIR   # baseline: another folder of metric files
    python -m facegen.ci.metric_gate --markdown gate.md   # also a pull request comment (docs/team.md)

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
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from facegen import artifacts
from facegen.config import MODEL_CONFIGS
from facegen.errors import FacegenError
from facegen.evaluation.comparison import Row, comparison_rows, fmt, headline
from facegen.evaluation.metric_specs import SPECS_FILE, MetricSpecs, load_specs
from facegen.evaluation.noise import MIN_RUNS, NOISE_FILE, Noise, load_noise

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
    stale: list[Change]        # gated, but the noise file marks its family's spread stale (Noise.stale)
    changes: list[Change]      # everything else that moved
    added: list[str]
    gone: list[str]
    gated: int                 # gated metrics with a measured spread: the m of the band rule


def gated_count(old: Metrics, new: Metrics, specs: MetricSpecs, noise: Noise) -> int:
    """How many gated metrics with a measured spread one gate run checks (the ``m`` of the band rule)."""
    return sum(1 for key in old.keys() & new.keys() if specs.for_key(key).gate and noise.measured(key))


def change_of(key: str, o: float, n: float, specs: MetricSpecs, noise: Noise, m: int) -> Change:
    """One metric's move from ``o`` to ``n`` with its band when ``m`` gated metrics are checked."""
    spec = specs.for_key(key)
    spread = noise.measured(key)
    band = specs.rule.band(spread, m, two_sided=spec.direction == "none") if spread is not None else math.nan
    return Change(key, o, n, band, spec.worsening(o, n), spread.sd if spread is not None else math.nan)


def regressed(change: Change, specs: MetricSpecs) -> bool:
    """A gated metric that became non-finite, or moved the wrong way by more than its band."""
    broke = math.isfinite(change.old) and not math.isfinite(change.new)
    return specs.for_key(change.key).gate and (broke or change.worsening > change.band)


def compare(old: Metrics, new: Metrics, specs: MetricSpecs, noise: Noise) -> Verdict:
    regressions, unmeasured, stale, changes = [], [], [], []
    m = gated_count(old, new, specs, noise)
    for key in sorted(old.keys() & new.keys()):
        change = change_of(key, old[key], new[key], specs, noise, m)
        if specs.for_key(key).gate and noise.stale_reason(key):
            stale.append(change)
        elif regressed(change, specs):
            regressions.append(change)
        elif specs.for_key(key).gate and math.isnan(change.band):
            unmeasured.append(change)
        elif change.old != change.new:
            changes.append(change)
    return Verdict(regressions, unmeasured, stale, changes, sorted(new.keys() - old.keys()),
                   sorted(old.keys() - new.keys()), m)


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
    for file in sorted({c.key.partition(":")[0] for c in v.stale}):
        print(f"not gated ({sum(c.key.startswith(file + ':') for c in v.stale)} metrics of {file}): "
              f"{noise.stale_reason(file + ':')}\n")
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


# ------------------------------------------------------------------------------------------------
# The review comment (--markdown FILE): what a pull request comment on the change holds.
#   * headline metrics (``summary`` with a direction): old, new, change in measured sds, band, verdict;
#   * the report's decisions (evaluation.comparison.comparison_rows: best or not separated, by the
#     noise rule) that changed, e.g. "vqvae vs vae on KID: separated (vqvae better) → not separated";
#   * each family's old and new samples.png, linked by paths relative to the Markdown file (CML's
#     ``cml comment create`` uploads linked images with the comment: docs/team.md).
# ------------------------------------------------------------------------------------------------
SAMPLE_GRID = "samples.png"


def verdict(change: Change, specs: MetricSpecs) -> str:
    """One word or two for a headline row of the comment."""
    if regressed(change, specs):
        return "**regression**"
    if not specs.for_key(change.key).gate:
        return "not gated"
    if math.isnan(change.band):
        return "**no measured spread**"
    if change.old == change.new:
        return "unchanged"
    return "improved" if -change.worsening > change.band else "within noise"


def _sds(change: Change) -> str:
    """The signed change in measured standard deviations (new - old, in the metric's own sign)."""
    if math.isnan(change.sd) or change.sd == 0:
        return "n/a"
    return f"{(change.new - change.old) / change.sd:+.1f}"


def headline_table(old: Metrics, new: Metrics, specs: MetricSpecs, noise: Noise, gated: int) -> list[str]:
    keys = [k for k in sorted(old.keys() & new.keys())
            if specs.for_key(k).summary and specs.for_key(k).direction != "none"]
    lines = ["| metric | old | new | change (sd) | band | verdict |", "|---|---:|---:|---:|---:|---|"]
    for key in keys:
        c = change_of(key, old[key], new[key], specs, noise, gated)
        label = specs.label(key.partition(":")[2])
        lines.append(f"| `{key}` {label} | {fmt(c.old)} | {fmt(c.new)} | {_sds(c)} | {fmt(c.band)} | "
                     f"{verdict(c, specs)} |")
    return lines


@dataclass(frozen=True)
class Decision:
    """The report's call on one headline row: the top two families, and whether the noise rule separates them."""

    first: str
    second: str
    separated: bool

    def state(self) -> str:
        return f"separated ({self.first} better)" if self.separated else "not separated"


def decision(row: Row, specs: MetricSpecs) -> Decision | None:
    """The row's leading pair and verdict (None with fewer than two families or no direction)."""
    direction = specs(row.metric).direction
    if len(row.values) < 2 or direction == "none":
        return None
    ranked = sorted(row.values, key=lambda f: (row.values[f], f), reverse=direction == "higher")  # ties: by name
    first = row.best or ranked[0]
    return Decision(first, next(f for f in ranked if f != first), row.best is not None)


def per_family(metrics: Metrics) -> dict[str, dict[str, float]]:
    """``{"vae.json:kid": v}`` -> ``{"vae": {"kid": v}}`` for the model families' files."""
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        file, _, name = key.partition(":")
        family = file.removesuffix(".json")
        if family in MODEL_CONFIGS and "." not in name:
            out.setdefault(family, {})[name] = value
    return out


def decision_changes(old: Metrics, new: Metrics, specs: MetricSpecs, noise: Noise) -> list[str]:
    """One line per headline row whose decision differs: the family best beyond noise, or none (a tie). A tie
    that stays a tie between other families is no decision changing."""
    before = {r.metric: r for r in comparison_rows(per_family(old), specs, noise) if headline(r, specs)}
    lines = []
    for row in comparison_rows(per_family(new), specs, noise):
        if not headline(row, specs) or row.metric not in before:
            continue
        a, b = decision(before[row.metric], specs), decision(row, specs)
        if a is None or b is None or before[row.metric].best == row.best:
            continue
        label = specs.label(row.metric)
        if {a.first, a.second} == {b.first, b.second}:
            lines.append(f"- {b.first} vs {b.second} on {label}: {a.state()} → {b.state()}")
        else:
            lines.append(f"- {label}: {a.first} vs {a.second} {a.state()} → {b.first} vs {b.second} {b.state()}")
    return lines


def _link(path: Path, base: Path, text: str) -> str:
    return f"![{text}]({Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()})"


def grid_table(reports: Path, baseline_reports: Path | None, out_dir: Path) -> list[str]:
    lines = ["| family | old | new |", "|---|---|---|"]
    for family in MODEL_CONFIGS:
        new = reports / family / SAMPLE_GRID
        old = baseline_reports / family / SAMPLE_GRID if baseline_reports is not None else None
        if not new.is_file() and (old is None or not old.is_file()):
            continue
        cells = [_link(p, out_dir, f"{family} {when}") if p is not None and p.is_file() else "none"
                 for p, when in ((old, "old"), (new, "new"))]
        lines.append(f"| {family} | {cells[0]} | {cells[1]} |")
    return lines


def markdown(old: Metrics | None, new: Metrics, result: Verdict | None, specs: MetricSpecs, noise: Noise,
             baseline: str, reports: Path, baseline_reports: Path | None, out: Path) -> str:
    """The comment's Markdown; ``out``: where it will be written (links are relative to its folder)."""
    if old is None or result is None:
        status = "no baseline to compare with (no committed metrics)"
    elif result.regressions or result.unmeasured:
        status = (f"**FAILED**: {len(result.regressions)} regression(s) beyond the measured noise band, "
                  f"{len(result.unmeasured)} gated metric(s) without a measured spread")
    else:
        status = f"passed: {len(old.keys() & new.keys())} metrics compared, none regressed beyond its band"
    parts = [f"## facegen metric gate: {status}", "",
             f"Baseline: `{baseline}`. Bands and sds: `{noise.source}` (the gate's band rule, "
             f"{result.gated if result else 0} gated metrics).", ""]
    if old is not None and result is not None:
        parts += ["### Headline metrics", "", *headline_table(old, new, specs, noise, result.gated), ""]
        changed = decision_changes(old, new, specs, noise)
        parts += ["### Decisions that changed", ""]
        parts += changed or ["None: every headline comparison of the report reads as before."]
        parts.append("")
        if result.added or result.gone:
            parts += [f"New metrics: {', '.join(result.added) or 'none'}; no longer produced: "
                      f"{', '.join(result.gone) or 'none'}.", ""]
    grids = grid_table(reports, baseline_reports, out.parent)
    parts += ["### Sample grids", ""]
    parts += grids if len(grids) > 2 else [f"No sample grid under {reports}/ (run `dvc repro`)."]
    if baseline_reports is None:
        parts += ["", f"(Old grids: pass `--baseline-reports`, e.g. from `dvc get . reports --rev {baseline} "
                      "-o baseline-reports`; `dvc plots diff` compares every grid.)"]
    return "\n".join(parts) + "\n"

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    parser.add_argument("--baseline-rev", default="HEAD", help="git revision holding the committed metrics")
    parser.add_argument("--baseline-dir", type=Path, help="compare against this folder instead of git")
    parser.add_argument("--specs", type=Path, default=SPECS_FILE)
    parser.add_argument("--noise", type=Path, default=NOISE_FILE, help="measured run-to-run spread per metric")
    parser.add_argument("--skip", nargs="*", default=["summary.json"], help="metric files not to gate")
    parser.add_argument("--no-dvc", action="store_true", help="do not print `dvc metrics diff`")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="also write a pull request comment: headline metrics, changed decisions, sample grids")
    parser.add_argument("--reports-dir", type=Path, default=artifacts.REPORTS, help="new sample grids (default: %(default)s)")
    parser.add_argument("--baseline-reports", type=Path, metavar="DIR",
                        help="the baseline's reports/ folder, for the comment's old sample grids")
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
    code = gate(new, old, specs, noise)
    if args.markdown is not None:
        result = compare(old, new, specs, noise) if old is not None else None
        baseline = str(args.baseline_dir) if args.baseline_dir is not None else args.baseline_rev
        artifacts.write_text(args.markdown, markdown(old, new, result, specs, noise, baseline, args.reports_dir,
                                                     args.baseline_reports, args.markdown))
        print(f"wrote the review comment to {args.markdown}")
    return code


if __name__ == "__main__":
    sys.exit(main())
