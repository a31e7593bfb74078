"""The field's known strengths of each family, judged over the recorded runs.

Each family exists for a reason the literature states; the comparison is only worth trusting if the
default pipeline shows it, and only says so where the recorded runs separate the families by the
report's one rule (``comparison.decision``: paired differences run by run, the paired t-test at the
specs' ``alpha``; the checks of one claim are Holm-adjusted together). An expectation is a claim
plus checks:

* :class:`Beats` - ``family`` is better than ``other`` on ``metric`` (paired), with a mean gap of at
  least ``by`` (in the metric's units, e.g. 2 dB of PSNR);
* :class:`Best` - ``family`` beats every other family that has ``metric``;
* :class:`Ratio` - ``family``'s mean is at least ``factor`` x ``other``'s, and they separate;
* :class:`AtLeast` - ``family``'s n-run mean is at least ``value`` (an absolute bar);
* :class:`AboveChance` - for every family and attribute, edit success at the preservation budget
  beats the random-direction chance line of that attribute (paired over the runs).

A check is *met*, *not met* (with the numbers that say why), or *not judged* (no recorded runs of
a value). Sources: VQ-VAE (van den Oord et al. 2017), DCGAN (Radford et al.
2016), β-VAE (Higgins et al. 2017; Burgess et al. 2018 for the rate-distortion trade-off), MIG (Chen
et al. 2018).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Literal, Union

from facegen.comparison.decision import Paired, estimate, holm, paired
from facegen.comparison.noise import Noise
from facegen.comparison.prose import RATE, rate_gap
from facegen.comparison.rows import fmt, runs_of
from facegen.comparison.specs import MetricSpecs

Status = Literal["met", "not met", "not judged"]
Metrics = dict[str, dict[str, float]]


@dataclass(frozen=True)
class Outcome:
    status: Status
    text: str  # one clause with the numbers, e.g. "PSNR: vqvae 28.4 ± 0.1 vs vae 26.5 ± 0.1: vqvae better in 7 of 7 runs"


@dataclass(frozen=True)
class Test:
    """One paired comparison a check asks for, before the claim's Holm adjustment: ``family`` expected
    better than ``other`` (a display name: "chance" for the chance line) on ``label``; ``pair`` None
    when either has no recorded runs; ``short``: why it falls short even if separated (e.g. the gap
    is below the expected size), else ""; ``note``: context said after the numbers."""

    label: str
    family: str
    other: str
    pair: Paired | None
    text: str
    short: str = ""
    note: str = ""  # context after the numbers, e.g. the rate each latent carries

    def outcome(self, pair: Paired | None, alpha: float) -> Outcome:
        if pair is None:
            return Outcome("not judged", f"{self.text}: no recorded runs")
        said = f"{self.text}: {pair.count()} ({pair.stats()})" + (f"; {self.note}" if self.note else "")
        if pair.better != self.family:
            return Outcome("not met", said)
        if not pair.separated(alpha):
            return Outcome("not met", f"{said}: not separated at α = {alpha:g}")
        if self.short:
            return Outcome("not met", f"{said}, but {self.short}")
        return Outcome("met", said)


def _mean(values: list[float] | None) -> str:
    return "n/a" if values is None else fmt(statistics.fmean(values))


def _test(label: str, family: str, a: list[float] | None, other: str, b: list[float] | None, higher: bool,
          short=lambda gap: "") -> Test:  # noqa: ANN001 - gap -> reason it falls short ("" if not)
    text = f"{label}: {family} {_mean(a)} vs {other} {_mean(b)} (means over the runs)"
    if a is None or b is None:
        return Test(label, family, other, None, text)
    pair = paired(family, a, other, b, higher)
    return Test(label, family, other, pair, text, short(pair.gap) if pair.better == family else "")


@dataclass(frozen=True)
class Beats:
    """``rate``: also say how many bits each latent carries (``rate_bits``, mean over the runs), the
    why behind a reconstruction gap (issue 28: "sharper at a stated rate ratio")."""

    metric: str
    family: str
    other: str
    by: float = 0.0
    rate: bool = False

    def tests(self, metrics: Metrics, specs: MetricSpecs, noise: Noise | None) -> list[Test | Outcome]:
        if self.metric not in metrics.get(self.family, {}) or self.metric not in metrics.get(self.other, {}):
            missing = self.family if self.metric not in metrics.get(self.family, {}) else self.other
            return [Outcome("not judged", f"{specs.label(self.metric)}: no value for {missing}")]
        by = self.by
        test = _test(specs.label(self.metric), self.family, runs_of(noise, self.family, self.metric), self.other,
                     runs_of(noise, self.other, self.metric), specs(self.metric).direction == "higher",
                     lambda gap: f"ahead by {fmt(gap)}, less than the {fmt(by)} expected" if gap < by else "")
        rates = {fam: runs_of(noise, fam, RATE) for fam in (self.family, self.other)} if self.rate else {}
        if rates and all(rates.values()):
            means = {fam: {RATE: statistics.fmean(values)} for fam, values in rates.items()}
            test = replace(test, note=f"{rate_gap(means, self.family, self.other)}, means over the runs")
        return [test]


@dataclass(frozen=True)
class Best:
    metric: str
    family: str

    def tests(self, metrics: Metrics, specs: MetricSpecs, noise: Noise | None) -> list[Test | Outcome]:
        others = [f for f in metrics if f != self.family and self.metric in metrics[f]]
        return [t for other in others for t in Beats(self.metric, self.family, other).tests(metrics, specs, noise)]


@dataclass(frozen=True)
class Ratio:
    metric: str
    family: str
    other: str
    factor: float

    def tests(self, metrics: Metrics, specs: MetricSpecs, noise: Noise | None) -> list[Test | Outcome]:
        out = Beats(self.metric, self.family, self.other).tests(metrics, specs, noise)
        a, b = runs_of(noise, self.family, self.metric), runs_of(noise, self.other, self.metric)
        if not isinstance(out[0], Test) or a is None or b is None:
            return out
        mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
        ratio = mean_a / mean_b if mean_b > 0 else float("inf")
        short = f"only {ratio:.2f}× (expected ≥ {self.factor:g}×)" if ratio < self.factor else ""
        return [replace(out[0], text=f"{out[0].text}, {ratio:.2f}× (≥ {self.factor:g}× expected)",
                        short=out[0].short or short)]


@dataclass(frozen=True)
class AtLeast:
    metric: str
    family: str
    value: float

    def tests(self, metrics: Metrics, specs: MetricSpecs, noise: Noise | None) -> list[Test | Outcome]:
        label = specs.label(self.metric)
        values = runs_of(noise, self.family, self.metric)
        if values is None:
            return [Outcome("not judged", f"{label}: no recorded runs of {self.family}")]
        est = estimate(values, specs.alpha)
        met = est.mean >= self.value
        above = sum(v >= self.value for v in values)
        return [Outcome("met" if met else "not met", f"{label}: {self.family} {fmt(est.mean)} ± {est.half:.2g} "
                        f"{'≥' if met else '<'} {fmt(self.value)} (≥ it in {above} of {len(values)} runs)")]


@dataclass(frozen=True)
class AboveChance:
    """Every family x attribute: ``edit_success_at_pres90_<A>`` beats ``edit_chance_at_pres90_<A>``
    (the random-direction line of the same sweep), paired over the recorded runs."""

    success: str = "edit_success_at_pres90_"
    chance: str = "edit_chance_at_pres90_"

    def tests(self, metrics: Metrics, specs: MetricSpecs, noise: Noise | None) -> list[Test | Outcome]:
        out: list[Test | Outcome] = []
        for family, values in metrics.items():
            for key in sorted(values):
                attr = key[len(self.success):]
                if not key.startswith(self.success) or attr == "mean" or f"{self.chance}{attr}" not in values:
                    continue
                out.append(_test(f"{family} {attr} edit success", family, runs_of(noise, family, key), "chance",
                                 runs_of(noise, family, f"{self.chance}{attr}"), True))
        return out


CheckType = Union[Beats, Best, Ratio, AtLeast, AboveChance]
WHY_AT_CHANCE = (" (within the 90% budget its direction moves the attribute no more than a random one: the "
                 "attribute is entangled with the others in this latent space, or barely encoded)")


@dataclass(frozen=True)
class Expectation:
    claim: str
    checks: tuple[CheckType, ...]

    def judge(self, metrics: Metrics, specs: MetricSpecs, noise: Noise | None) -> tuple[Status, list[Outcome]]:
        """All outcomes, and the claim's status: met if every check is, not judged if any cannot be. The
        paired tests of one claim are Holm-adjusted together (a claim over 32 attributes makes 32 tests)."""
        items = [t for check in self.checks for t in check.tests(metrics, specs, noise)]
        tests = [t for t in items if isinstance(t, Test) and t.pair is not None]
        adjusted = dict(zip(map(id, tests), holm([t.pair for t in tests])))
        outcomes = []
        for item in items:
            if isinstance(item, Outcome):
                outcomes.append(item)
                continue
            outcome = item.outcome(adjusted.get(id(item)), specs.alpha)
            if item.other == "chance" and outcome.status == "not met" and item.pair and item.pair.better == "chance":
                outcome = Outcome("not met", outcome.text + WHY_AT_CHANCE)
            outcomes.append(outcome)
        statuses = {o.status for o in outcomes}
        if not outcomes or "not judged" in statuses:
            return "not judged", outcomes
        return ("met" if statuses == {"met"} else "not met"), outcomes


# The targets of the default run (issue 17): what each family is for, in the literature's terms.
EXPECTATIONS: tuple[Expectation, ...] = (
    Expectation("VQ-VAE reconstructs sharper than the VAE (≥ 2 dB PSNR, and SSIM), at the rate its codes carry",
                (Beats("recon_psnr", "vqvae", "vae", by=2.0, rate=True), Beats("recon_ssim", "vqvae", "vae"))),
    Expectation("Raising β trades reconstruction for disentanglement: the VAE reconstructs better, the β-VAE "
                "disentangles better (DCI)",
                (Beats("recon_psnr", "vae", "beta_vae", rate=True), Beats("dci_disentanglement", "beta_vae", "vae"))),
    Expectation("The DCGAN gives the most realistic samples (Inception KID)", (Best("kid_inception", "dcgan"),)),
    Expectation("VQ-VAE + PixelCNN prior samples are more realistic than the VAE's (Inception KID)",
                (Beats("kid_inception", "vqvae", "vae"),)),
    Expectation("β-VAE disentangles: MIG ≥ 2× the VAE's and ≥ 0.15",
                (Ratio("mig", "beta_vae", "vae", 2.0), AtLeast("mig", "beta_vae", 0.15))),
    Expectation("Every family's edits beat random directions on every attribute (at 90% preservation)",
                (AboveChance(),)),
)


@dataclass(frozen=True)
class Verdict:
    claim: str
    status: Status
    outcomes: list[Outcome]

    def shown(self, limit: int = 4) -> list[str]:
        """The outcomes to print: all of a short list; else the counts, every one not met, and the
        first reason of those not judged (they share it: a missing spread or value)."""
        if len(self.outcomes) <= limit:
            return [o.text for o in self.outcomes]
        count = {status: sum(o.status == status for o in self.outcomes) for status in ("met", "not met", "not judged")}
        lines = [f"{count['met']} of {len(self.outcomes)} checks met, {count['not met']} not met, "
                 f"{count['not judged']} not judged"]
        lines += [o.text for o in self.outcomes if o.status == "not met"]
        judged = [o.text for o in self.outcomes if o.status == "not judged"]
        if judged:
            lines.append(f"not judged, e.g. {judged[0]}")
        return lines


def judge_all(metrics: Metrics, specs: MetricSpecs, noise: Noise | None,
              expectations: tuple[Expectation, ...] = EXPECTATIONS) -> list[Verdict]:
    """Every expectation judged on this run's numbers (a family not evaluated makes its checks "not judged")."""
    return [Verdict(exp.claim, *exp.judge(metrics, specs, noise)) for exp in expectations]
