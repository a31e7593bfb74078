"""CI gate: fresh ``metrics/*.json`` against the recorded runs, on the headline metrics.

    python -m facegen.ci.metric_gate                      # committed metrics: git HEAD's metrics/
    python -m facegen.ci.metric_gate --baseline-dir DIR   # committed metrics: another folder of metric files
    python -m facegen.ci.metric_gate --markdown gate.md   # also a pull request comment (docs/team.md)

What is gated is declared in ``metrics_tolerances.yaml``: the ``headline: true`` metrics of every
metric file (about 20 numbers; ``reference.json``, the real-vs-real floors, and ``summary.json`` are
skipped). Each is checked against the recorded runs of ``metrics_noise.json`` (seeds x precision,
``python -m benchmarks.bench_noise``) by the rule of ``comparison.bands``:

* on the committed run's own machine kind (CPU ISA, torch build, precision: runs there are
  bit-for-bit deterministic) the fresh value must equal the committed one;
* elsewhere it must not fall from the runs' mean, in its bad direction and on its scale (log for
  ratios), by more than a Student-t prediction bound, Bonferroni over the gated metrics.

A gated metric with no recorded runs fails (the gate cannot tell noise from a regression for it);
one whose file the noise marks stale, or whose committed value is not the recorded committed run's
(the runs predate the committed models), is listed as not gated with the reason. Improvements pass;
metrics or files that are new or gone are listed but never fail. ``dvc metrics diff`` output is
printed first, for humans.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from facegen import artifacts
from facegen.comparison.bands import SAME_KIND_RTOL, prediction_k, scaled_spread
from facegen.comparison.noise import NOISE_FILE, Noise, load_noise
from facegen.comparison.rows import Row, comparison_rows, decide_row, fmt, headline
from facegen.comparison.specs import SPECS_FILE, MetricSpec, MetricSpecs, load_specs
from facegen.config import MODEL_CONFIGS, load_params
from facegen.errors import FacegenError
from facegen.runtime import machine_kind

Metrics = dict[str, float]  # "file.json:metric" -> value
# Not gated: summary.json repeats the decisions; reference.json holds the real-vs-real floors, a function of
# the data whose change shows in every family's rows.
SKIP = ("summary.json", "reference.json")


@dataclass(frozen=True)
class Change:
    key: str
    old: float        # the committed value
    new: float
    centre: float     # what the band is around, on the metric's scale: the runs' mean (nan: no runs)
    band: float       # allowed move in the bad direction from the centre, on that scale (nan: no runs)
    worsening: float  # signed move of ``new`` in the bad direction from the centre (negative = better)
    sd: float         # the runs' sd on that scale (nan: none)
    scale: str = "linear"
    n: int = 0        # recorded runs

    @property
    def sigmas(self) -> float:
        """How many recorded standard deviations the move in the bad direction is."""
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
    regressions: list[Change]  # gated, beyond the band (or not reproduced on the committed machine kind)
    unmeasured: list[Change]   # gated, but no recorded runs to judge by
    stale: dict[str, str]      # metric file -> why its recorded runs do not describe the committed models
    passed: list[Change]       # gated and within the band
    added: list[str]
    gone: list[str]
    gated: int                 # gated metrics with recorded runs: the G of the band rule
    same_kind: bool            # this machine is the committed run's kind: exact reproduction expected


def gated_keys(old: Metrics, new: Metrics, specs: MetricSpecs) -> list[str]:
    """The headline metrics both the committed and the fresh files have."""
    return sorted(k for k in old.keys() & new.keys() if specs.for_key(k).headline)


def gate_scale(spec: MetricSpec, values: list[float]) -> MetricSpec:
    """The metric's spec on its gating scale, linear where a recorded run is not positive (a log cannot hold it)."""
    return spec if spec.scale == "linear" or min(values) > 0 else replace(spec, scale="linear")


def stale_files(old: Metrics, keys: list[str], noise: Noise) -> dict[str, str]:
    """Metric files whose recorded runs do not describe the committed models: marked stale in the noise
    file, or a committed value that is not the recorded committed run's."""
    out: dict[str, str] = {}
    for key in keys:
        file = key.partition(":")[0]
        if file in out:
            continue
        if reason := noise.stale_reason(key):
            out[file] = reason
        elif (recorded := noise.committed_value(key)) is not None and not same_value(recorded, old[key]):
            out[file] = (f"the committed {key} = {fmt(old[key])} is not the recorded committed run's {fmt(recorded)}: "
                         "the runs predate the committed models (rerun `python -m benchmarks.bench_noise`)")
    return out


def _change(key: str, old: float, new: float, values: list[float], spec: MetricSpec, specs: MetricSpecs,
            gated: int) -> Change:
    """``new`` against recorded ``values`` on the spec's gating scale (the band for ``gated`` metrics checked)."""
    spec = gate_scale(spec, values)
    spread = scaled_spread(values, spec.transform)
    band = specs.rule.band(spread, gated, two_sided=spec.direction == "none")
    return Change(key, old, new, spread.mean, band, spec.worsening(spread.mean, spec.transform(new)), spread.sd,
                  spec.scale, spread.n)


def change_of(key: str, old: float, new: float, specs: MetricSpecs, noise: Noise, gated: int) -> Change:
    """One metric against the recorded runs (the band for ``gated`` metrics checked)."""
    values = noise.values(key)
    if values is None:
        return Change(key, old, new, math.nan, math.nan, math.nan, math.nan, specs.for_key(key).scale)
    return _change(key, old, new, values, specs.for_key(key), specs, gated)


@dataclass(frozen=True)
class Contrast:
    """A decision the report makes, gated as a number: ``better``'s lead over ``worse`` on ``metric``, run by
    run, on the metric's scale (positive = ``better`` ahead). A fresh run where the β-VAE's MIG falls to the
    VAE's keeps each value inside its own wide band, but not the lead: within a run the two move together
    far less than apart, so the paired lead is what separates them (comparison.decision)."""

    metric: str
    better: str
    worse: str

    @property
    def key(self) -> str:
        return f"{self.better}.json-{self.worse}.json:{self.metric}"

    def lead(self, a: float, b: float, spec: MetricSpec) -> float:
        return spec.worsening(spec.transform(a), spec.transform(b))  # how much worse ``worse`` is

    def change(self, old: Metrics, new: Metrics, specs: MetricSpecs, noise: Noise, gated: int) -> Change:
        a_key, b_key = f"{self.better}.json:{self.metric}", f"{self.worse}.json:{self.metric}"
        a_runs, b_runs = noise.values(a_key), noise.values(b_key)
        spec = gate_scale(gate_scale(specs(self.metric), a_runs), b_runs)
        leads = [self.lead(a, b, spec) for a, b in zip(a_runs, b_runs)]
        higher = MetricSpec("higher")  # the lead, already on the metric's scale
        return _change(self.key, self.lead(old[a_key], old[b_key], spec), self.lead(new[a_key], new[b_key], spec),
                       leads, higher, specs, gated)


def contrasts(keys: list[str], specs: MetricSpecs, noise: Noise) -> list[Contrast]:
    """For each headline row the recorded runs decide (a best family), the best family against the runner-up."""
    families: dict[str, list[str]] = {}
    for key in keys:
        file, _, metric = key.partition(":")
        if file.removesuffix(".json") in MODEL_CONFIGS:
            families.setdefault(metric, []).append(file.removesuffix(".json"))
    out = []
    for metric, fams in sorted(families.items()):
        lead = decide_row(metric, fams, specs, noise)
        if lead.best is not None and (pair := lead.lead()) is not None:
            out.append(Contrast(metric, pair.better, pair.worse))
    return out


def same_value(new: float, old: float) -> bool:
    """Equal up to float printing: what a bit-for-bit reproduction of ``old`` gives."""
    return abs(new - old) <= SAME_KIND_RTOL * max(1.0, abs(old))


def reproduced(change: Change) -> bool:
    return same_value(change.new, change.old)


def regressed(change: Change, same_kind: bool) -> bool:
    """Not reproduced on the committed machine kind; elsewhere non-finite, or beyond the band."""
    if same_kind:
        return not reproduced(change)
    broke = math.isfinite(change.old) and not math.isfinite(change.new)
    return broke or change.worsening > change.band


def compare(old: Metrics, new: Metrics, specs: MetricSpecs, noise: Noise, same_kind: bool = False) -> Verdict:
    keys = gated_keys(old, new, specs)
    stale = stale_files(old, keys, noise)
    live = [k for k in keys if k.partition(":")[0] not in stale]
    # on the committed machine kind the values themselves must reproduce; elsewhere the decisions are gated too
    leads = [] if same_kind else contrasts([k for k in live if noise.values(k) is not None], specs, noise)
    gated = sum(noise.values(k) is not None for k in live) + len(leads)
    regressions, unmeasured, passed = [], [], []
    changes = [change_of(key, old[key], new[key], specs, noise, gated) for key in live]
    for change in changes + [c.change(old, new, specs, noise, gated) for c in leads]:
        if math.isnan(change.band):
            unmeasured.append(change)
        elif regressed(change, same_kind):
            regressions.append(change)
        else:
            passed.append(change)
    return Verdict(regressions, unmeasured, stale, passed, sorted(new.keys() - old.keys()),
                   sorted(old.keys() - new.keys()), gated, same_kind)


def table(rows: list[Change]) -> str:
    header = ("metric", "committed", "new", "runs' mean", "band", "worsening", "sigmas", "scale")
    cells = [header] + [(c.key, fmt(c.old), fmt(c.new), fmt(c.centre), fmt(c.band), fmt(c.worsening), f"{c.sigmas:.1f}",
                         c.scale) for c in rows]
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


def leave_one_out(noise: Noise, specs: MetricSpecs) -> list[tuple[dict[str, object], Verdict]]:
    """Every recorded run gated against the committed run's metrics, with bands from the other runs: what a
    rerun on another machine would face, checked on the runs we have (``bench_noise --check``, tests)."""
    if noise.committed is None:
        raise FacegenError(f"{noise.source} does not record which run is committed: rerun benchmarks.bench_noise")
    def gated(metrics: dict[str, float]) -> Metrics:
        return {k: v for k, v in metrics.items() if k.partition(":")[0] not in SKIP}

    committed = gated(noise.run(noise.committed))
    return [(run, compare(committed, gated(noise.run(i)), specs, noise.without(i))) for i, run in enumerate(noise.runs)]


def same_machine_kind(noise: Noise) -> bool:
    """Whether this machine runs the committed run's kernels: same ISA flags, torch build, precision."""
    precision = load_params().runtime.precision if Path("params.yaml").is_file() else "auto"
    return bool(noise.kind) and machine_kind(precision) == noise.kind


def gate(new: Metrics, old: Metrics | None, specs: MetricSpecs, noise: Noise, same_kind: bool = False) -> int:
    """Print the verdict; return the exit code (0 pass, 1 regression or unmeasured gated metric)."""
    if old is None:
        print("metric gate: no committed baseline metrics (no commit yet?); nothing to compare, passing.")
        return 0
    v = compare(old, new, specs, noise, same_kind)
    rule = specs.rule
    if same_kind:
        print(f"same machine kind as the committed run ({noise.kind}): runs are bit-for-bit deterministic here, "
              f"so every gated metric must equal its committed value (relative {SAME_KIND_RTOL:g})\n")
    else:
        ns = sorted({c.n for c in v.passed + v.regressions})
        ks = ", ".join(f"{prediction_k(n, max(v.gated, 1), rule.false_alarm):.2f} at n = {n}" for n in ns)
        print(f"bands: max(k sd, {rule.floor_rel:g} |mean|) around the mean of the recorded runs in {noise.source}, "
              f"on each metric's scale; k = t_(n-1)(1 - {rule.false_alarm:g} / {v.gated} gated) sqrt(1 + 1/n) = "
              f"{ks or 'none'} (a no-change rerun on another CPU kind fails with probability <= {rule.false_alarm:g})\n")
    if v.passed:
        print(f"gated and within the band ({len(v.passed)}; 'a.json-b.json:metric' is a's lead over b, the decision "
              f"the report makes on that row):\n{table(v.passed)}\n")
    if v.added:
        print(f"new metrics (not gated): {', '.join(v.added)}\n")
    if v.gone:
        print(f"metrics no longer produced (not gated): {', '.join(v.gone)}\n")
    for file, reason in sorted(v.stale.items()):
        print(f"not gated ({file}): {reason}\n")
    failed = False
    if v.unmeasured:
        print(f"METRIC GATE FAILED: {len(v.unmeasured)} gated metric(s) without recorded runs in {noise.source} "
              f"(rerun `python -m benchmarks.bench_noise`, or drop `headline: true` in {SPECS_FILE}): "
              f"{', '.join(c.key for c in v.unmeasured)}\n")
        failed = True
    if v.regressions:
        how = "not reproduced on the committed machine kind" if same_kind else "beyond the band of the recorded runs"
        print(f"METRIC GATE FAILED: {len(v.regressions)} regression(s) {how}:\n{table(v.regressions)}")
        failed = True
    if failed:
        return 1
    print(f"metric gate passed: {len(v.passed)} gated metrics, none "
          f"{'changed on the committed machine kind' if same_kind else 'beyond its band'} ({noise.source}).")
    return 0


# ------------------------------------------------------------------------------------------------
# The review comment (--markdown FILE): what a pull request comment on the change holds.
#   * the gated metrics: committed, new, the runs' mean, band, verdict;
#   * the report's decisions (comparison.decision over the recorded runs) that changed between the
#     baseline's metrics_noise.json and this one, e.g. "vqvae vs vae on KID: not separated → vqvae best";
#   * each family's old and new samples.png, linked by paths relative to the Markdown file (CML's
#     ``cml comment create`` uploads linked images with the comment: docs/team.md).
# ------------------------------------------------------------------------------------------------
SAMPLE_GRID = "samples.png"


def verdict(change: Change, same_kind: bool) -> str:
    """One word or two for a gated row of the comment."""
    if math.isnan(change.band):
        return "**no recorded runs**"
    if regressed(change, same_kind):
        return "**regression**"
    if change.old == change.new:
        return "unchanged"
    return "improved" if -change.worsening > change.band else "within noise"


def headline_table(result: Verdict, specs: MetricSpecs) -> list[str]:
    lines = ["| metric | committed | new | runs' mean | band | verdict |", "|---|---:|---:|---:|---:|---|"]
    for c in sorted(result.regressions + result.unmeasured + result.passed, key=lambda c: c.key):
        label = specs.label(c.key.partition(":")[2])
        lines.append(f"| `{c.key}` {label} | {fmt(c.old)} | {fmt(c.new)} | {fmt(c.centre)} | {fmt(c.band)} "
                     f"{'(log)' if c.scale == 'log' else ''} | {verdict(c, result.same_kind)} |")
    return lines


def per_family(metrics: Metrics) -> dict[str, dict[str, float]]:
    """``{"vae.json:kid": v}`` -> ``{"vae": {"kid": v}}`` for the model families' files."""
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        file, _, name = key.partition(":")
        family = file.removesuffix(".json")
        if family in MODEL_CONFIGS and "." not in name:
            out.setdefault(family, {})[name] = value
    return out


def _state(row: Row) -> str:
    if row.best is not None:
        return f"{row.best} best"
    return "not ranked" if row.decision.unranked else "not separated"


def decision_changes(new: Metrics, specs: MetricSpecs, before: Noise | None, after: Noise) -> list[str]:
    """One line per headline row whose decision differs between the baseline's recorded runs and these."""
    if before is None:
        return []
    families = per_family(new)
    old_rows = {r.metric: r for r in comparison_rows(families, specs, before)}
    return [f"- {row.label}: {_state(old_rows[row.metric])} → {_state(row)}"
            for row in comparison_rows(families, specs, after)
            if headline(row, specs) and row.metric in old_rows and _state(old_rows[row.metric]) != _state(row)]


def read_git_noise(rev: str, path: Path) -> Noise | None:
    """The recorded runs committed at ``rev`` (None when there is none)."""
    try:
        text = _git("show", f"{rev}:{path.as_posix()}")
    except (OSError, subprocess.CalledProcessError):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        copy.write_text(text)
        try:
            return load_noise(copy)
        except FacegenError:
            return None


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
             baseline: str, reports: Path, baseline_reports: Path | None, out: Path,
             baseline_noise: Noise | None = None) -> str:
    """The comment's Markdown; ``out``: where it will be written (links are relative to its folder)."""
    if old is None or result is None:
        status = "no baseline to compare with (no committed metrics)"
    elif result.regressions or result.unmeasured:
        status = (f"**FAILED**: {len(result.regressions)} regression(s), "
                  f"{len(result.unmeasured)} gated metric(s) without recorded runs")
    else:
        status = f"passed: {len(result.passed)} gated metrics, none regressed"
    parts = [f"## facegen metric gate: {status}", "",
             f"Baseline: `{baseline}`. Recorded runs: `{noise.source}` ({result.gated if result else 0} gated "
             "metrics; comparison/bands.py).", ""]
    if old is not None and result is not None:
        parts += ["### Gated metrics", "", *headline_table(result, specs), ""]
        changed = decision_changes(new, specs, baseline_noise, noise)
        parts += ["### Decisions that changed", ""]
        parts += changed or ["None: every headline decision of the report reads as before (decisions come from the "
                             "recorded runs, so they change when metrics_noise.json does)."]
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
    parser.add_argument("--skip", nargs="*", default=list(SKIP), help="metric files not to gate")
    parser.add_argument("--statistical", action="store_true",
                        help="use the recorded runs' bands even on the committed run's machine kind")
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
    same_kind = not args.statistical and same_machine_kind(noise)
    code = gate(new, old, specs, noise, same_kind)
    if args.markdown is not None:
        result = compare(old, new, specs, noise, same_kind) if old is not None else None
        baseline = str(args.baseline_dir) if args.baseline_dir is not None else args.baseline_rev
        artifacts.write_text(args.markdown, markdown(old, new, result, specs, noise, baseline, args.reports_dir,
                                                     args.baseline_reports, args.markdown,
                                                     read_git_noise(args.baseline_rev, args.noise)))
        print(f"wrote the review comment to {args.markdown}")
    return code


if __name__ == "__main__":
    sys.exit(main())
