"""The report's sentences, computed from the decided rows: nothing is written in advance.

Every sentence names the n-run means with their t-intervals and, for the leading pair, the paired
count and test ("vqvae better than vae in 7 of 7 runs, paired t = 25, p_Holm = 1e-05"), so a reader
sees what the decision rests on (``comparison.decision``).
"""
from __future__ import annotations

from facegen.comparison.decision import Decision, Estimate
from facegen.comparison.rows import Row, comparison_rows, fmt, headline, restated, wins
from facegen.comparison.noise import Noise
from facegen.comparison.specs import MetricSpecs

RATE, RAW_RATE = "rate_bits", "rate_raw_bits"
# (what a reader wants, the headline row that answers it)
PURPOSES = (("reconstruction", "recon_psnr"), ("edits", "edit_success_at_pres90_mean"), ("samples", "kid_inception"))


def _est(family: str, est: Estimate) -> str:
    return f"{family} {fmt(est.mean)} ± {est.half:.2g}"


def _unranked(row: Row, noise: Noise | None) -> str:
    """Why a row with two or more families is not ranked: which families have no recorded runs, and why."""
    missing = ", ".join(row.decision.unranked)
    reason = next((r for fam in row.decision.unranked if noise is not None
                   and (r := noise.stale_reason(f"{fam}.json:{row.metric}"))), None)
    return f"no recorded runs of {missing}" + (f" ({reason})" if reason else "")


def decision_text(row: Row, noise: Noise | None) -> str:
    """The row's decision in one clause (without the label): best with its evidence, not separated, or
    not ranked (and why)."""
    d: Decision = row.decision
    if d.unranked and len(row.values) > 1:
        shown = ", ".join(f"{fam} {fmt(v)}" for fam, v in row.values.items())
        return f"not ranked ({_unranked(row, noise)}); this run: {shown}"
    lead = d.lead()
    if lead is None:
        return "nothing to compare"
    a, b = d.estimates[lead.better], d.estimates[lead.worse]
    said = f"{_est(lead.better, a)} vs {_est(lead.worse, b)} over {a.n} runs: {lead.count()} ({lead.stats()})"
    if row.best is not None:
        return f"**{row.best} best**, {said}"
    if row.detail:
        return f"a detail row ({row.detail}); {said}"
    return f"not separated at α = {d.alpha:g}, {said}"


def pairs_text(row: Row) -> str | None:
    """Every pair of the row, paired over the recorded runs (None with fewer than two ranked families):
    '**KID** pairs over 7 runs: dcgan better than vae in 6 of 7 (p_Holm = 0.005), ...'."""
    pairs = sorted(row.decision.pairs, key=lambda p: p.p_adjusted)
    if len(pairs) < 2:
        return None
    n = pairs[0].n
    said = "; ".join(f"{p.better} better than {p.worse} in {p.wins} of {p.n} (p_Holm = {p.p_adjusted:.2g})"
                     for p in pairs)
    return f"**{row.label}**, every pair over {n} runs (most to least separated): {said}."


def sentence(row: Row, noise: Noise | None) -> str:
    """One Markdown sentence on a row: the only family, or the decision."""
    if len(row.values) == 1:
        (fam, value), = row.values.items()
        return f"**{row.label}**: only {fam} has it ({fmt(value)})."
    return f"**{row.label}**: {decision_text(row, noise)}."


def analysis(metrics: dict[str, dict[str, float]], specs: MetricSpecs, noise: Noise | None = None) -> list[str]:
    """One sentence per comparable headline metric, then the tally of :func:`wins` (Markdown inline)."""
    if len(metrics) < 2:
        return [f"Only {', '.join(metrics) or 'no family'} evaluated: nothing to compare yet."]
    rows = [row for row in comparison_rows(metrics, specs, noise) if headline(row, specs)]
    lines, compared, repeats = [], 0, []
    for row in rows:
        if restated(row, rows, specs):
            repeats.append(f"{row.label} (same best family as {specs.label(specs(row.metric).restates)})")
        else:
            compared += len(row.values) > 1
        lines.append(sentence(row, noise))
    tally = wins(rows, list(metrics), specs)
    won = sum(len(v) for v in tally.values())
    if compared:
        ranked = ", ".join(f"{fam} {len(w)}" for fam, w in sorted(tally.items(), key=lambda kv: -len(kv[1])) if w)
        again = f"; not counted again: {', '.join(repeats)}" if repeats else ""
        lines.append(f"**Wins** over the {compared} headline metrics compared across families "
                     f"({compared - won} not separated or not ranked{again}): {ranked or 'none'}.")
    return lines


# ----------------------------------------------------------------------------------------------
# The report's first screen: which family to use for what, at what rate and cost
# ----------------------------------------------------------------------------------------------
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


def _top_two(row: Row) -> tuple[str, str] | None:
    """The leading pair by the recorded runs, else by this run's values (no runs recorded)."""
    lead = row.decision.lead()
    if lead is not None:
        return lead.better, lead.worse
    if len(row.values) < 2:
        return None
    ranked = sorted(row.values, key=row.values.__getitem__)
    return (ranked[-1], ranked[-2]) if row.values[ranked[-1]] != row.values[ranked[0]] else (ranked[0], ranked[1])


def rate_sentence(row: Row, metrics: dict[str, dict[str, float]]) -> str | None:
    """The rate behind a row's top two families (None with fewer than two, or when neither has a rate)."""
    top = _top_two(row)
    if top is None or (RATE not in metrics[top[0]] and RATE not in metrics[top[1]]):
        return None
    return f"**Rate** behind {row.label}: {rate_gap(metrics, *top)}."


def _rates(metrics: dict[str, dict[str, float]]) -> str | None:
    rated = sorted((m[RATE], fam) for fam, m in metrics.items() if RATE in m)
    if not rated:
        return None
    parts = [f"{fam} {fmt(r)}" + (f" ({fmt(metrics[fam][RAW_RATE])} raw, positions·log₂K)"
                                  if RAW_RATE in metrics[fam] else "") for r, fam in rated]
    unrated = [fam for fam, m in metrics.items() if RATE not in m]
    return ("**Rate**, the bits per test image each latent carries (this run): " + ", ".join(parts)
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
    """The report's first screen in a few sentences (Markdown inline), all computed: the rate of every
    latent, then which family to use for reconstruction, edits and samples (only where the recorded
    runs separate the leader from every other family, as in the tables) with the paired evidence and
    the rate behind the choice, then the cost in parameters."""
    lines = [line for line in (_rates(metrics),) if line]
    rows = {row.metric: row for row in comparison_rows(metrics, specs, noise)}
    for purpose, metric in PURPOSES:
        row = rows.get(metric)
        top = _top_two(row) if row is not None else None
        if row is None or top is None:
            continue
        first, second = top
        said = decision_text(row, noise) + _floor(reference or {}, metrics, first, metric)
        head = f"**For {purpose} use {row.best}**" if row.best is not None else f"**For {purpose}**"
        said = said.removeprefix(f"**{row.best} best**, ") if row.best is not None else said
        lines.append(f"{head} ({specs.label(metric)}): {said}; {rate_gap(metrics, first, second)}.")
    params = {fam: m["num_parameters"] for fam, m in metrics.items() if "num_parameters" in m}
    if params:
        lines.append("**Cost**: " + ", ".join(f"{fam} {v / 1e6:.2f} M parameters" for fam, v in params.items())
                     + "; training and sampling times depend on the machine (MLflow, benchmarks/).")
    return lines
