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
from facegen.evaluation.noise import Noise, Spread

# Order of metric groups in the table: by name prefix; anything else comes last, alphabetically.
GROUP_ORDER = ("recon_", "fid_", "kid_", "precision", "recall", "density", "coverage", "edit_", "identity_", "mig", "dci_",
               "sap", "nll", "elbo", "prior_", "test_", "active_dims", "num_parameters")


@dataclass(frozen=True)
class Row:
    metric: str
    label: str
    values: dict[str, float]  # family -> value (families lacking the metric are absent)
    best: str | None          # family best beyond noise; None without a direction, with < 2 values, or on a tie
    detail: str = ""          # why this run's value is shown as a detail row, not a headline (never best then)


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
    a, b = measured(noise, best, name), measured(noise, second, name)
    if a is None or b is None:  # no measured noise for this row: a win cannot be told from noise
        return None
    return best if specs.rule.separated(values[best], values[second], a.sd, b.sd) else None


def measured(noise: Noise | None, family: str, metric: str) -> Spread | None:
    """The family's measured spread of ``metric``, if measured over enough runs (the gate's MIN_RUNS)."""
    return noise.measured(f"{family}.json:{metric}") if noise is not None else None


def interval(noise: Noise | None, family: str, metric: str, z: float = 2.0) -> float | None:
    """Half-width of the value's interval, z x the run-to-run sd measured for it (seeds x precision,
    so it covers training and evaluation noise); None where the spread was not measured."""
    spread = measured(noise, family, metric)
    return None if spread is None else z * spread.sd


def with_interval(value: float, noise: Noise | None, family: str, metric: str) -> str:
    """``value`` as the report shows it: :func:`fmt`, then ``± interval`` where one was measured."""
    half = interval(noise, family, metric)
    return fmt(value) + (f" ± {half:.2g}" if half else "")  # an interval needs 2 digits, not 4


@dataclass(frozen=True)
class Section:
    """One question the report answers: its headline metrics (in table order) and its figure."""

    title: str
    question: str
    metrics: tuple[str, ...]
    figure: str | None = None      # key of report.comparison
    reference: str = ""            # what every number is measured against
    names_rate: bool = False       # its sentences say how many bits the leaders' latents carry


SECTIONS = (
    Section("Reconstruction", "How faithfully does each family reproduce a test face it has never seen?",
            ("recon_psnr", "recon_ssim", "recon_mse"), "reconstructions",
            "The data itself scores PSNR ∞ and SSIM 1; the DCGAN has no encoder, so its row is latent optimisation.",
            names_rate=True),
    Section("Sample realism", "How realistic are its samples, and do they cover the variety of real faces?",
            ("kid_inception", "fid_inception", "kid_facegen", "fid_facegen", "precision", "recall", "density", "coverage"),
            "samples", "The column 'real vs real' scores training faces against the same test faces at the same "
            "sample counts: the best any model can do."),
    Section("Likelihood", "How much probability does it give test faces (lower bits/dim is better)?",
            ("nll_bits_per_dim", "elbo_nats", "decoder_nll_bits_per_dim", "kl_bits_per_dim",
             "code_nll_conditional_bits_per_dim"), None,
            "A uniform model over the 256 levels scores 8.0 bits/dim. GANs define no likelihood."),
    Section("Attribute editing", "Can an attribute be changed by moving in the latent space without changing the others?",
            ("edit_success_at_pres90_mean", "edit_success_auc_mean", "edit_chance_at_pres90_mean",
             "judge_accuracy_real", "judge_accuracy_recon"), "edit_curves",
            "Success is read off each family's strength sweep where 90% of the other attributes are still kept; "
            "'chance' is the same for random face-to-face directions. The judge (the attribute classifier) is "
            "scored on test faces and on each family's reconstructions of them: a judge that cannot read a "
            "family's decodes cannot score its edits.", names_rate=True),
    Section("Disentanglement", "Does each latent dimension capture one ground-truth factor (synthetic data only)?",
            ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap", "active_dims")),
    Section("Cost", "What does each family cost?", ("num_parameters",), None,
            "Training and sampling times depend on the machine: they are logged to MLflow and measured in benchmarks/."),
)


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
    names = sorted({m for fam in metrics.values() for m in fam}, key=lambda m: _order(m, specs))
    rows = []
    for name in names:
        values = {fam: vals[name] for fam, vals in metrics.items() if name in vals}
        detail = _detail(name, values, metrics)
        rows.append(Row(name, specs.label(name), values, None if detail else _best(name, values, specs, noise),
                        detail))
    return rows


def headline(row: Row, specs: MetricSpecs) -> bool:
    """Rows the analysis compares and wins are counted over: summary rows with a direction, unless this
    run's sample sizes make the row a detail (:data:`FID_MIN_SAMPLES`)."""
    spec = specs(row.metric)
    return spec.summary and spec.direction != "none" and not row.detail


def restated(row: Row, rows: list[Row], specs: MetricSpecs) -> bool:
    """Whether ``row`` only restates another row of ``rows``: its spec names that row (``restates``)
    and both have the same best family, so a second win would count one fact twice."""
    other = specs(row.metric).restates
    return bool(other) and row.best is not None and any(r.metric == other and r.best == row.best for r in rows)


def wins(rows: list[Row], families: list[str], specs: MetricSpecs) -> dict[str, list[str]]:
    """Headline rows each family is best on (beyond noise), less rows that restate another row's
    win (:func:`restated`): the one tally of the report, summary.json and MLflow."""
    out: dict[str, list[str]] = {fam: [] for fam in families}
    for row in rows:
        if headline(row, specs) and row.best is not None and not restated(row, rows, specs):
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


def _unmeasured(noise: Noise | None, metric: str, *ranked: tuple[str, float]) -> bool:
    """Whether two different values cannot be ranked because a family has no measured spread for
    ``metric`` (not the same as "within noise": the noise is unknown)."""
    (a, va), (b, vb) = ranked
    return noise is not None and va != vb and (measured(noise, a, metric) is None or measured(noise, b, metric) is None)


def sentence(row: Row, specs: MetricSpecs, noise: Noise | None) -> str:
    """One Markdown sentence on a headline row: best (with the gap), tie, or the only family that has it."""
    if len(row.values) == 1:
        (fam, value), = row.values.items()
        return f"**{row.label}**: only {fam} has it ({fmt(value)})."
    best, second = _ranked(row.metric, row.values, specs)[:2]
    b, s = row.values[best], row.values[second]
    if row.best is None:  # the top two are not separated
        if _unmeasured(noise, row.metric, (best, b), (second, s)):
            return (f"**{row.label}**: not ranked, {best} ({fmt(b)}) vs {second} ({fmt(s)}): no measured "
                    "run-to-run spread to tell the gap from noise.")
        why = "within run-to-run noise" if noise is not None and b != s else "exactly"
        return f"**{row.label}**: tie, {best} ({fmt(b)}) and {second} ({fmt(s)}) agree {why}."
    return f"**{row.label}**: {_comparison(best, b, second, s, specs(row.metric).direction)}."


def analysis(metrics: dict[str, dict[str, float]], specs: MetricSpecs, noise: Noise | None = None) -> list[str]:
    """One sentence per comparable headline metric, then the tally of :func:`wins` (Markdown inline)."""
    if len(metrics) < 2:
        return [f"Only {', '.join(metrics) or 'no family'} evaluated: nothing to compare yet."]
    lines = []
    rows = [row for row in comparison_rows(metrics, specs, noise) if headline(row, specs)]
    compared, repeats = 0, []
    for row in rows:
        if restated(row, rows, specs):
            repeats.append(f"{row.label} (same best family as {specs.label(specs(row.metric).restates)})")
        else:
            compared += len(row.values) > 1
        lines.append(sentence(row, specs, noise))
    tally = wins(rows, list(metrics), specs)
    won = sum(len(v) for v in tally.values())
    if compared:
        ranked = ", ".join(f"{fam} {len(w)}" for fam, w in sorted(tally.items(), key=lambda kv: -len(kv[1])) if w)
        again = f"; not counted again: {', '.join(repeats)}" if repeats else ""
        lines.append(f"**Wins** over the {compared} headline metrics compared across families "
                     f"({compared - won} ties{again}): {ranked or 'none'}.")
    return lines


# ----------------------------------------------------------------------------------------------
# The report's first screen: which family to use for what, at what rate and cost
# ----------------------------------------------------------------------------------------------
RATE, RAW_RATE = "rate_bits", "rate_raw_bits"
# (what a reader wants, the headline row that answers it)
PURPOSES = (("reconstruction", "recon_psnr"), ("edits", "edit_success_at_pres90_mean"), ("samples", "kid_inception"))


def rate_gap(metrics: dict[str, dict[str, float]], a: str, b: str) -> str:
    """How many bits family ``a``'s latent carries against ``b``'s, e.g. "vqvae's latent carries 31× vae's
    bits (930 vs 30 bits/image)"; a family without ``rate_bits`` (no encoder, e.g. the DCGAN) is named as such."""
    ra, rb = metrics[a].get(RATE), metrics[b].get(RATE)
    if ra is None or rb is None:
        return "; ".join(f"{fam} has no encoder rate" if r is None else f"{fam}'s latent carries {fmt(r)} bits/image"
                         for fam, r in ((a, ra), (b, rb)))
    if min(ra, rb) <= 0:
        return f"{a}'s latent carries {fmt(ra)} bits/image, {b}'s {fmt(rb)}"
    ratio = f"{max(ra, rb) / min(ra, rb):.1f}×"
    how = f"{ratio} {b}'s bits" if ra >= rb else f"{ratio} fewer bits than {b}'s"
    return f"{a}'s latent carries {how} ({fmt(ra)} vs {fmt(rb)} bits/image)"


def rate_sentence(row: Row, metrics: dict[str, dict[str, float]], specs: MetricSpecs) -> str | None:
    """The rate behind a row's top two families (None with fewer than two, or when neither has a rate)."""
    if len(row.values) < 2:
        return None
    first, second = _ranked(row.metric, row.values, specs)[:2]
    if RATE not in metrics[first] and RATE not in metrics[second]:
        return None
    return f"**Rate** behind {row.label}: {rate_gap(metrics, first, second)}."


def _rates(metrics: dict[str, dict[str, float]]) -> str | None:
    rated = sorted((m[RATE], fam) for fam, m in metrics.items() if RATE in m)
    if not rated:
        return None
    parts = [f"{fam} {fmt(r)}" + (f" ({fmt(metrics[fam][RAW_RATE])} raw, positions·log₂K)"
                                  if RAW_RATE in metrics[fam] else "") for r, fam in rated]
    unrated = [fam for fam, m in metrics.items() if RATE not in m]
    return ("**Rate**, the bits per test image each latent carries: " + ", ".join(parts)
            + (f"; {', '.join(unrated)}: no encoder, so no rate" if unrated else "") + ".")


def _floor(reference: dict[str, float], metrics: dict[str, dict[str, float]], family: str, metric: str) -> str:
    """The real-vs-real floor of ``metric`` and the sample sizes it and ``family`` were measured at."""
    if metric not in reference:
        return ""
    n = {k: (reference.get(k), metrics[family].get(k)) for k in ("inception_n_fake", "inception_n_real")}
    if any(v is None for pair in n.values() for v in pair):
        return f"; real vs real {fmt(reference[metric])}"
    (rf, ff), (rr, fr) = n["inception_n_fake"], n["inception_n_real"]
    at = (f"at the same n ({fmt(ff)} vs {fmt(fr)} faces)" if (rf, rr) == (ff, fr)
          else f"at n = {fmt(rf)} vs {fmt(rr)}, the family's at {fmt(ff)} vs {fmt(fr)}")
    return f"; real vs real {fmt(reference[metric])} {at}"


def answer(metrics: dict[str, dict[str, float]], specs: MetricSpecs, noise: Noise | None = None,
           reference: dict[str, float] | None = None) -> list[str]:
    """The report's first screen in a few sentences (Markdown inline), all computed from this run:
    the rate of every latent, then which family to use for reconstruction, edits and samples (only
    where the leader is separated from the runner-up beyond the measured noise, as in the tables),
    with the rate behind the choice, then the cost in parameters."""
    lines = [line for line in (_rates(metrics),) if line]
    rows = {row.metric: row for row in comparison_rows(metrics, specs, noise)}
    for purpose, metric in PURPOSES:
        row = rows.get(metric)
        if row is None or len(row.values) < 2:
            continue
        first, second = _ranked(metric, row.values, specs)[:2]
        b, s = row.values[first], row.values[second]
        gap = f" ({b - s:+.1f} dB)" if metric == "recon_psnr" else ""
        said = f"{row.label} {first} {fmt(b)} vs {second} {fmt(s)}{gap}{_floor(reference or {}, metrics, first, metric)}"
        rate = rate_gap(metrics, first, second)
        if row.best == first:
            head = f"**For {purpose} use {first}**"
        elif _unmeasured(noise, metric, (first, b), (second, s)):
            head = f"**For {purpose}** {first} leads, not yet ranked (no measured run-to-run spread for the gap)"
        else:
            head = f"**For {purpose}** no family is ahead beyond run-to-run noise"
        lines.append(f"{head}: {said}" + (f"; {rate}" if rate else "") + ".")
    params = {fam: m["num_parameters"] for fam, m in metrics.items() if "num_parameters" in m}
    if params:
        lines.append("**Cost**: " + ", ".join(f"{fam} {v / 1e6:.2f} M parameters" for fam, v in params.items())
                     + "; training and sampling times depend on the machine (MLflow, benchmarks/).")
    return lines
