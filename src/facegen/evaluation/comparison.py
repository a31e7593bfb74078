"""The comparison of families from their metrics: the table, the best per row, and the prose.

Pure functions of ``{family: {metric: value}}``, the metric specs (directions from
``metrics_tolerances.yaml``) and the measured run-to-run noise (``metrics_noise.json``), so every
sentence of the report's analysis is computed from the numbers of this run, never written in
advance. A family is "best" on a row only when its gap to the runner-up exceeds the noise
(``NoiseRule.separated``); otherwise the row is a tie and nobody wins it.
"""
from __future__ import annotations

from dataclasses import dataclass

from facegen.evaluation.metric_specs import MetricSpecs
from facegen.evaluation.noise import Noise

# Order of metric groups in the table: by name prefix; anything else comes last, alphabetically.
GROUP_ORDER = ("recon_", "fid_", "kid_", "precision", "recall", "density", "coverage", "edit_", "identity_", "mig", "dci_",
               "sap", "nll", "elbo", "prior_", "test_", "active_dims", "num_parameters")


@dataclass(frozen=True)
class Row:
    metric: str
    label: str
    values: dict[str, float]  # family -> value (families lacking the metric are absent)
    best: str | None          # family best beyond noise; None without a direction, with < 2 values, or on a tie


def _order(metric: str, specs: MetricSpecs) -> tuple[int, bool, str]:
    """Group by prefix; inside a group, headline metrics before per-attribute detail rows."""
    group = next((i for i, prefix in enumerate(GROUP_ORDER) if metric.startswith(prefix)), len(GROUP_ORDER))
    return group, not specs(metric).summary, metric


def _ranked(name: str, values: dict[str, float], specs: MetricSpecs) -> list[str]:
    return sorted(values, key=values.__getitem__, reverse=specs(name).direction == "higher")


def _best(name: str, values: dict[str, float], specs: MetricSpecs, noise: Noise | None) -> str | None:
    """The best family, if its gap to the runner-up exceeds the measured noise (``noise=None``: any gap)."""
    best = specs(name).best(values) if len(values) > 1 else None
    if best is None or noise is None:
        return best
    second = _ranked(name, values, specs)[1]
    a, b = noise.spread(f"{best}.json:{name}"), noise.spread(f"{second}.json:{name}")
    if a is None or b is None:  # no measured noise for this row: a win cannot be told from noise
        return None
    return best if specs.rule.separated(values[best], values[second], a.sd, b.sd) else None


def comparison_rows(metrics: dict[str, dict[str, float]], specs: MetricSpecs, noise: Noise | None = None
                    ) -> list[Row]:
    names = sorted({m for fam in metrics.values() for m in fam}, key=lambda m: _order(m, specs))
    rows = []
    for name in names:
        values = {fam: vals[name] for fam, vals in metrics.items() if name in vals}
        rows.append(Row(name, specs.label(name), values, _best(name, values, specs, noise)))
    return rows


def headline(row: Row, specs: MetricSpecs) -> bool:
    """Rows the analysis compares and wins are counted over: summary rows with a direction."""
    spec = specs(row.metric)
    return spec.summary and spec.direction != "none"


def wins(rows: list[Row], families: list[str], specs: MetricSpecs) -> dict[str, list[str]]:
    """Headline rows each family is best on (beyond noise): the one tally of the report, summary.json and MLflow."""
    out: dict[str, list[str]] = {fam: [] for fam in families}
    for row in rows:
        if headline(row, specs) and row.best is not None:
            out[row.best].append(row.metric)
    return out


def fmt(value: float) -> str:
    """Compact number: 4 significant digits, thousands separators for large counts."""
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 1e4:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _comparison(best: str, b: float, second: str, s: float, direction: str) -> str:
    """'vae is best (0.01), 2.0× lower than beta_vae (0.02)' or '... ahead of X (..) by d (p%)'."""
    diff = abs(b - s)
    if b * s > 0:
        ratio = max(abs(b), abs(s)) / min(abs(b), abs(s))
        if ratio >= 1.5:
            return f"{best} is best ({fmt(b)}), {ratio:.1f}× {direction} than {second} ({fmt(s)})"
        return f"{best} is best ({fmt(b)}), ahead of {second} ({fmt(s)}) by {fmt(diff)} ({100 * diff / abs(s):.2g}%)"
    return f"{best} is best ({fmt(b)}), ahead of {second} ({fmt(s)}) by {fmt(diff)}"


def analysis(metrics: dict[str, dict[str, float]], specs: MetricSpecs, noise: Noise | None = None) -> list[str]:
    """One sentence per comparable headline metric, then the tally of :func:`wins` (Markdown inline)."""
    if len(metrics) < 2:
        return [f"Only {', '.join(metrics) or 'no family'} evaluated: nothing to compare yet."]
    lines = []
    rows = [row for row in comparison_rows(metrics, specs, noise) if headline(row, specs)]
    compared = 0
    for row in rows:
        if len(row.values) == 1:
            (fam, value), = row.values.items()
            lines.append(f"**{row.label}**: only {fam} has it ({fmt(value)}).")
            continue
        compared += 1
        best, second = _ranked(row.metric, row.values, specs)[:2]
        b, s = row.values[best], row.values[second]
        if row.best is None:  # the top two are not separated
            why = "within run-to-run noise" if noise is not None and b != s else "exactly"
            lines.append(f"**{row.label}**: tie, {best} ({fmt(b)}) and {second} ({fmt(s)}) agree {why}.")
            continue
        lines.append(f"**{row.label}**: {_comparison(best, b, second, s, specs(row.metric).direction)}.")
    tally = wins(rows, list(metrics), specs)
    won = sum(len(v) for v in tally.values())
    if compared:
        ranked = ", ".join(f"{fam} {len(w)}" for fam, w in sorted(tally.items(), key=lambda kv: -len(kv[1])) if w)
        lines.append(f"**Wins** over the {compared} headline metrics compared across families "
                     f"({compared - won} ties): {ranked or 'none'}.")
    return lines
