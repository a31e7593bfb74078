"""The comparison of families from their metrics: the table, the best per row, and the prose.

Pure functions of ``{family: {metric: value}}`` and the metric specs (directions from
``metrics_tolerances.yaml``), so every sentence of the report's analysis is computed from the
numbers of this run, never written in advance.
"""
from __future__ import annotations

from dataclasses import dataclass

from facegen.evaluation.metric_specs import MetricSpecs

# Order of metric groups in the table: by name prefix; anything else comes last, alphabetically.
GROUP_ORDER = ("recon_", "fid_", "kid_", "precision", "recall", "density", "coverage", "edit_", "identity_", "mig", "dci_",
               "sap", "nll", "prior_nll", "test_", "active_dims", "sample_img_per_s", "num_parameters")


@dataclass(frozen=True)
class Row:
    metric: str
    label: str
    values: dict[str, float]  # family -> value (families lacking the metric are absent)
    best: str | None          # family with the best value; None without a direction or with < 2 values


def _order(metric: str, specs: MetricSpecs) -> tuple[int, bool, str]:
    """Group by prefix; inside a group, headline metrics before per-attribute detail rows."""
    group = next((i for i, prefix in enumerate(GROUP_ORDER) if metric.startswith(prefix)), len(GROUP_ORDER))
    return group, not specs(metric).summary, metric


def comparison_rows(metrics: dict[str, dict[str, float]], specs: MetricSpecs) -> list[Row]:
    names = sorted({m for fam in metrics.values() for m in fam}, key=lambda m: _order(m, specs))
    rows = []
    for name in names:
        values = {fam: vals[name] for fam, vals in metrics.items() if name in vals}
        best = specs(name).best(values) if len(values) > 1 else None
        rows.append(Row(name, specs.label(name), values, best))
    return rows


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


def analysis(metrics: dict[str, dict[str, float]], specs: MetricSpecs) -> list[str]:
    """One sentence per comparable headline metric, then a tally of wins (Markdown inline)."""
    if len(metrics) < 2:
        return [f"Only {', '.join(metrics) or 'no family'} evaluated: nothing to compare yet."]
    lines = []
    wins: dict[str, list[str]] = {fam: [] for fam in metrics}
    for row in comparison_rows(metrics, specs):
        spec = specs(row.metric)
        if not spec.summary or spec.direction == "none":
            continue
        if len(row.values) == 1:
            (fam, value), = row.values.items()
            lines.append(f"**{row.label}**: only {fam} has it ({fmt(value)}).")
            continue
        ranked = sorted(row.values.items(), key=lambda kv: kv[1], reverse=spec.direction == "higher")
        (best, b), (second, s) = ranked[0], ranked[1]
        if row.best is None:  # tie at the top
            lines.append(f"**{row.label}**: {best} and {second} tie ({fmt(b)}).")
            continue
        wins[best].append(row.label)
        lines.append(f"**{row.label}**: {_comparison(best, b, second, s, spec.direction)}.")
    contested = sum(len(v) for v in wins.values())
    if contested:
        tally = ", ".join(f"{fam} {len(w)}" for fam, w in sorted(wins.items(), key=lambda kv: -len(kv[1])) if w)
        lines.append(f"**Wins** over the {contested} metrics compared across families: {tally}.")
    return lines
