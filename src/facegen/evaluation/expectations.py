"""The field's known strengths of each family, checked against this run's numbers.

Each family exists for a reason the literature states; the comparison is only worth trusting if the
default run shows it, and only says so where the numbers separate beyond the measured run-to-run
noise (``NoiseRule.separated``, the report's tie rule). An expectation is a claim plus checks:

* :class:`Beats` - ``family`` is better than ``other`` on ``metric`` beyond noise, by at least ``by``
  (in the metric's units, e.g. 2 dB of PSNR);
* :class:`Best` - ``family`` beats every other family that has ``metric``;
* :class:`Ratio` - ``family``'s value is at least ``factor`` x ``other``'s, and they separate;
* :class:`AtLeast` - ``family``'s value is at least ``value`` (an absolute bar, no noise involved);
* :class:`AboveChance` - for every family and attribute, edit success at the preservation budget
  beats the random-direction chance line of that attribute beyond noise.

A check is *met*, *not met* (with the numbers that say why), or *not judged* (a value or its
measured spread is missing). Sources: VQ-VAE (van den Oord et al. 2017), DCGAN (Radford et al.
2016), β-VAE (Higgins et al. 2017; Burgess et al. 2018 for the rate-distortion trade-off), MIG (Chen
et al. 2018).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Union

from facegen.evaluation.comparison import fmt, measured
from facegen.evaluation.metric_specs import MetricSpec, MetricSpecs
from facegen.evaluation.noise import Noise, NoiseRule, Spread

Status = Literal["met", "not met", "not judged"]
Metrics = dict[str, dict[str, float]]


@dataclass(frozen=True)
class Outcome:
    status: Status
    text: str  # one clause with the numbers, e.g. "PSNR: vqvae 28.1 ± 0.2 vs vae 26.3 ± 0.1: ahead by 1.8, less than 2"


@dataclass(frozen=True)
class Value:
    """One side of a comparison: who, the value, its measured run-to-run spread (None: not measured)."""

    name: str
    value: float | None
    spread: Spread | None

    def __str__(self) -> str:
        pm = f" ± {2 * self.spread.sd:.2g}" if self.spread is not None else ""  # an interval needs 2 digits
        return f"{self.name} {fmt(self.value) if self.value is not None else 'n/a'}{pm}"


def _value(metrics: Metrics, noise: Noise | None, family: str, metric: str) -> Value:
    return Value(family, metrics.get(family, {}).get(metric), measured(noise, family, metric))


def _compare(label: str, spec: MetricSpec, a: Value, b: Value, rule: NoiseRule, by: float = 0.0) -> Outcome:
    """``a`` better than ``b`` in ``spec``'s direction, separated by ``rule`` and by at least ``by``."""
    if a.value is None or b.value is None:
        return Outcome("not judged", f"{label}: no value for {a.name if a.value is None else b.name}")
    gap = spec.worsening(a.value, b.value)  # how much worse b is than a: positive = a ahead
    text = f"{label}: {a} vs {b}"
    if a.spread is None or b.spread is None:
        return Outcome("not judged", f"{text}: no measured run-to-run spread")
    if gap <= 0:
        return Outcome("not met", f"{text}: {b.name} is as good or better")
    if not rule.separated(a.value, b.value, a.spread.sd, b.spread.sd):
        return Outcome("not met", f"{text}: within run-to-run noise")
    if gap < by:
        return Outcome("not met", f"{text}: ahead by {fmt(gap)}, less than the {fmt(by)} expected")
    return Outcome("met", f"{text}: ahead by {fmt(gap)}" + (f" (≥ {fmt(by)})" if by else ""))


@dataclass(frozen=True)
class Beats:
    metric: str
    family: str
    other: str
    by: float = 0.0

    def judge(self, metrics: Metrics, specs: MetricSpecs, noise: Noise | None) -> list[Outcome]:
        return [_compare(specs.label(self.metric), specs(self.metric),
                         _value(metrics, noise, self.family, self.metric),
                         _value(metrics, noise, self.other, self.metric), specs.rule, self.by)]


@dataclass(frozen=True)
class Best:
    metric: str
    family: str

    def judge(self, metrics: Metrics, specs: MetricSpecs, noise: Noise | None) -> list[Outcome]:
        others = [f for f in metrics if f != self.family and self.metric in metrics[f]]
        return [o for other in others for o in Beats(self.metric, self.family, other).judge(metrics, specs, noise)]


@dataclass(frozen=True)
class Ratio:
    metric: str
    family: str
    other: str
    factor: float

    def judge(self, metrics: Metrics, specs: MetricSpecs, noise: Noise | None) -> list[Outcome]:
        outcome, = Beats(self.metric, self.family, self.other).judge(metrics, specs, noise)
        if outcome.status != "met":
            return [outcome]
        a, b = metrics[self.family][self.metric], metrics[self.other][self.metric]
        if b > 0 and a < self.factor * b:
            return [Outcome("not met", f"{outcome.text}, but only {a / b:.2f}× (expected ≥ {self.factor:g}×)")]
        ratio = f"{a / b:.2f}×" if b > 0 else "∞×"
        return [Outcome("met", f"{outcome.text}, {ratio} (≥ {self.factor:g}×)")]


@dataclass(frozen=True)
class AtLeast:
    metric: str
    family: str
    value: float

    def judge(self, metrics: Metrics, specs: MetricSpecs, noise: Noise | None) -> list[Outcome]:
        v = _value(metrics, noise, self.family, self.metric)
        label = specs.label(self.metric)
        if v.value is None:
            return [Outcome("not judged", f"{label}: no value for {self.family}")]
        met = v.value >= self.value
        return [Outcome("met" if met else "not met", f"{label}: {v} {'≥' if met else '<'} {fmt(self.value)}")]


@dataclass(frozen=True)
class AboveChance:
    """Every family x attribute: ``edit_success_at_pres90_<A>`` beats ``edit_chance_at_pres90_<A>``
    (the random-direction line of the same sweep), each with its own measured spread."""

    success: str = "edit_success_at_pres90_"
    chance: str = "edit_chance_at_pres90_"

    def judge(self, metrics: Metrics, specs: MetricSpecs, noise: Noise | None) -> list[Outcome]:
        out = []
        for family, values in metrics.items():
            for key in sorted(values):
                attr = key[len(self.success):]
                if not key.startswith(self.success) or attr == "mean" or f"{self.chance}{attr}" not in values:
                    continue
                edit = _value(metrics, noise, family, key)
                chance = _value(metrics, noise, family, f"{self.chance}{attr}")
                outcome = _compare(f"{family} {attr} edit success", MetricSpec("higher"), edit,
                                   replace(chance, name="chance"), specs.rule)
                if outcome.status == "not met" and (edit.value or 0.0) <= (chance.value or 0.0):
                    # why, in the sweep's terms (reports/<family>/edit_curves.json)
                    outcome = Outcome("not met", f"{outcome.text} (within the 90% budget its direction moves the "
                                                 "attribute no more than a random one: the attribute is entangled "
                                                 "with the others in this latent space, or barely encoded)")
                out.append(outcome)
        return out


CheckType = Union[Beats, Best, Ratio, AtLeast, AboveChance]


@dataclass(frozen=True)
class Expectation:
    claim: str
    checks: tuple[CheckType, ...]

    def judge(self, metrics: Metrics, specs: MetricSpecs, noise: Noise | None) -> tuple[Status, list[Outcome]]:
        """All outcomes, and the claim's status: met if every check is, not judged if any cannot be."""
        outcomes = [o for check in self.checks for o in check.judge(metrics, specs, noise)]
        statuses = {o.status for o in outcomes}
        if not outcomes or "not judged" in statuses:
            return "not judged", outcomes
        return ("met" if statuses == {"met"} else "not met"), outcomes


# The targets of the default run (issue 17): what each family is for, in the literature's terms.
EXPECTATIONS: tuple[Expectation, ...] = (
    Expectation("VQ-VAE reconstructs sharper than the VAE (≥ 2 dB PSNR, and SSIM)",
                (Beats("recon_psnr", "vqvae", "vae", by=2.0), Beats("recon_ssim", "vqvae", "vae"))),
    Expectation("Raising β costs reconstruction: the VAE reconstructs better than the β-VAE",
                (Beats("recon_psnr", "vae", "beta_vae"),)),
    Expectation("The DCGAN gives the most realistic samples (Inception KID and FID)",
                (Best("kid_inception", "dcgan"), Best("fid_inception", "dcgan"))),
    Expectation("VQ-VAE + PixelCNN prior samples are more realistic than the VAE's",
                (Beats("kid_inception", "vqvae", "vae"), Beats("fid_inception", "vqvae", "vae"))),
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
