"""The comparison table: one row per metric, each decided from the recorded runs.

Pure functions of ``{family: {metric: value}}`` (this run, shown as a point), the metric specs
(``metrics_tolerances.yaml``) and the recorded runs (``metrics_noise.json``). A family is "best" on a
row only where :func:`comparison.decision.decide` separates it from every other family; the single
run never decides.
"""
from __future__ import annotations

from dataclasses import dataclass

from facegen.comparison.decision import Decision, decide
from facegen.comparison.noise import Noise
from facegen.comparison.specs import MetricSpecs

# Order of metric groups in the appendix: by name prefix; anything else comes last, alphabetically.
GROUP_ORDER = ("recon_", "fid_", "kid_", "precision", "recall", "density", "coverage", "edit_", "identity_", "mig", "dci_",
               "sap", "nll", "elbo", "rate_", "prior_", "test_", "active_dims", "num_parameters")


@dataclass(frozen=True)
class Row:
    metric: str
    label: str
    values: dict[str, float]  # family -> this run's value (families lacking the metric are absent)
    decision: Decision        # from the recorded runs
    detail: str = ""          # why this run's value is shown as a detail row, not a headline (never best then)

    @property
    def best(self) -> str | None:
        """The family the recorded runs separate from every other (None: not separated, not ranked, a detail row)."""
        return None if self.detail else self.decision.best


def _order(metric: str, specs: MetricSpecs) -> tuple[int, bool, str]:
    """Group by prefix; inside a group, headline metrics before the rest."""
    group = next((i for i, prefix in enumerate(GROUP_ORDER) if metric.startswith(prefix)), len(GROUP_ORDER))
    return group, not specs(metric).headline, metric


def runs_of(noise: Noise | None, family: str, metric: str) -> list[float] | None:
    """The family's recorded values of ``metric`` (None: not recorded over enough runs of these models)."""
    return noise.values(f"{family}.json:{metric}") if noise is not None else None


def decide_row(metric: str, families: list[str], specs: MetricSpecs, noise: Noise | None) -> Decision:
    """:func:`decide` on the recorded runs of ``families`` (the one call every reader makes)."""
    return decide(metric, {fam: runs_of(noise, fam, metric) for fam in families}, specs(metric).direction,
                  specs.alpha)


# Inception FID needs more samples than its 2,048 feature dimensions: below that the covariance
# estimate is rank-deficient and FID favours less diverse samples (Chong & Forsyth, "Effectively
# Unbiased FID and Inception Score", CVPR 2020; Bińkowski et al., ICLR 2018, whose unbiased KID is
# the headline instead). The GPU profile draws enough; the CPU default does not.
FID_MIN_SAMPLES = 2048
FID_DETAIL = f"FID at n < {FID_MIN_SAMPLES:,} is biased toward less diverse samples: KID is the headline"


def _detail(name: str, values: dict[str, float], metrics: dict[str, dict[str, float]]) -> str:
    """Why ``name`` is a detail row in this run ("" when it is not): Inception FID from too few samples."""
    if name != "fid_inception":
        return ""
    counts = [metrics[fam].get("inception_n_fake", 0.0) for fam in values]
    return "" if min(counts, default=0.0) >= FID_MIN_SAMPLES else f"{FID_DETAIL} (n = {fmt(min(counts))})"


def comparison_rows(metrics: dict[str, dict[str, float]], specs: MetricSpecs, noise: Noise | None = None
                    ) -> list[Row]:
    """Every metric any family has, in appendix order, each decided from the recorded runs."""
    names = sorted({m for fam in metrics.values() for m in fam}, key=lambda m: _order(m, specs))
    rows = []
    for name in names:
        values = {fam: vals[name] for fam, vals in metrics.items() if name in vals}
        rows.append(Row(name, specs.label(name), values, decide_row(name, list(values), specs, noise),
                        _detail(name, values, metrics)))
    return rows


def headline(row: Row, specs: MetricSpecs) -> bool:
    """Rows the first screen, the tally and the gate count: ``headline: true`` in the specs, unless this
    run's sample sizes make the row a detail (:data:`FID_MIN_SAMPLES`)."""
    return specs(row.metric).headline and not row.detail


def restated(row: Row, rows: list[Row], specs: MetricSpecs) -> bool:
    """Whether ``row`` only restates another row of ``rows``: its spec names that row (``restates``)
    and both have the same best family, so a second win would count one fact twice."""
    other = specs(row.metric).restates
    return bool(other) and row.best is not None and any(r.metric == other and r.best == row.best for r in rows)


def wins(rows: list[Row], families: list[str], specs: MetricSpecs) -> dict[str, list[str]]:
    """Headline rows each family is best on (separated by the paired test), less rows that restate another
    row's win (:func:`restated`): the one tally of the report, summary.json and MLflow."""
    out: dict[str, list[str]] = {fam: [] for fam in families}
    for row in rows:
        if headline(row, specs) and row.best is not None and not restated(row, rows, specs):
            out[row.best].append(row.metric)
    return out


def cell(row: Row, family: str) -> str:
    """A family's cell: the n-run mean ± its t-interval, this run's value beside it as a point; only the
    run's value where no runs were recorded."""
    if family not in row.values:
        return "–"
    est = row.decision.estimates.get(family)
    if est is None:
        return fmt(row.values[family])
    return f"{fmt(est.mean)} ± {est.half:.2g} (run {fmt(row.values[family])})"  # an interval needs 2 digits


def fmt(value: float) -> str:
    """Compact number: 4 significant digits, thousands separators for large counts."""
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 1e4:
        return f"{value:,.0f}"
    return f"{value:.4g}"
