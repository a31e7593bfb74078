"""The one rule that decides between families: paired differences over the recorded runs.

Within one recorded run every family trained on the same data split, was scored on the same test
faces and against the same real features; their numbers are correlated (measured: -0.74 ... +0.89
between families), so comparing two families' single values against the sum of their variances
asks the wrong question. What decides is the paired difference run by run: for families A and B on
one metric, ``d_i = a_i - b_i`` signed so that positive means A better, over the n runs that have
both. :func:`paired` gives how often A was better ("A better than B in k of n runs"), the mean gap
and the paired t-test (Student 1908; two-sided p with n - 1 degrees of freedom).

:func:`decide` applies that to every pair of families on one row and adjusts the p-values for the
pairs of the row (Holm 1979, step-down: uniformly more powerful than Bonferroni, same guarantee).
A family is **best** only when it is better than every other family at the stated level ``alpha``
after that adjustment; otherwise the row says "not separated" with the leading pair's count. A row
with fewer than ``MIN_RUNS`` recorded runs for a family is "not ranked": the noise is unknown,
which is not the same as equal.

Each family's value is summarised by the n-run mean with a two-sided Student-t interval
(mean ± t_{n-1}(1 - alpha/2) · sd / sqrt(n)); the committed run is shown beside it as a point.
This module is the only place a comparison is decided: the report's tables and sentences,
``metrics/summary.json``, MLflow and the known strengths (``comparison.expectations``) all call it.
"""
from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from itertools import combinations

from facegen.comparison.noise import MIN_RUNS


@dataclass(frozen=True)
class Estimate:
    """A family's value of one metric over the recorded runs: mean, interval half-width, n."""

    mean: float
    half: float  # t-interval half-width at the decision level (0 with n < 2)
    n: int


@dataclass(frozen=True)
class Paired:
    """``better`` vs ``worse`` on one metric, over the runs both have (oriented so the mean gap >= 0)."""

    better: str
    worse: str
    wins: int       # runs where ``better`` was strictly better
    n: int
    gap: float      # mean difference in the metric's units, in ``better``'s favour (>= 0)
    t: float        # paired t statistic (inf when every difference is the same non-zero number)
    p: float        # two-sided p of the paired t-test
    p_adjusted: float = math.nan  # Holm-adjusted over the pairs of the row (nan: a lone comparison)

    def separated(self, alpha: float) -> bool:
        p = self.p if math.isnan(self.p_adjusted) else self.p_adjusted
        return p < alpha and self.gap > 0

    def count(self) -> str:
        """'vqvae better than vae in 7 of 7 runs'."""
        return f"{self.better} better than {self.worse} in {self.wins} of {self.n} runs"

    def stats(self) -> str:
        """'paired t = 6.1, p = 0.001' (Holm-adjusted p where the row adjusted it)."""
        t = "∞" if math.isinf(self.t) else f"{self.t:.3g}"
        p = self.p if math.isnan(self.p_adjusted) else self.p_adjusted
        return f"paired t = {t}, p{'_Holm' if not math.isnan(self.p_adjusted) else ''} = {p:.2g}"


@dataclass(frozen=True)
class Decision:
    """One row decided: per-family estimates, every pair, the best family (None: not separated), and
    ``unranked``: families without recorded runs (the row is not ranked while any exists)."""

    metric: str
    estimates: dict[str, Estimate]
    pairs: list[Paired]
    best: str | None
    unranked: tuple[str, ...]
    alpha: float

    def ranking(self) -> list[str]:
        """Families with recorded runs, best mean first."""
        # pairs are oriented better-first by the mean gap, so counting pairs won ranks by the mean
        beats = {fam: 0 for fam in self.estimates}
        for pair in self.pairs:
            beats[pair.better] += 1
        return sorted(self.estimates, key=lambda f: -beats[f])

    def lead(self) -> Paired | None:
        """The leading pair: the first family against the runner-up (None with fewer than two)."""
        order = self.ranking()
        if len(order) < 2:
            return None
        return self.pair(order[0], order[1])

    def pair(self, a: str, b: str) -> Paired | None:
        return next((p for p in self.pairs if {p.better, p.worse} == {a, b}), None)


@functools.lru_cache(maxsize=None)
def t_quantile(q: float, df: int) -> float:
    from scipy.stats import t  # local import: scipy.stats costs ~0.5 s at start-up

    return float(t.ppf(q, df))


def _t_sf(x: float, df: int) -> float:
    from scipy.stats import t

    return float(t.sf(x, df))


def estimate(values: list[float], alpha: float) -> Estimate:
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Estimate(mean, 0.0, n)
    return Estimate(mean, t_quantile(1 - alpha / 2, n - 1) * statistics.stdev(values) / math.sqrt(n), n)


def paired(a: str, a_values: list[float], b: str, b_values: list[float], higher_better: bool) -> Paired:
    """The paired comparison of ``a`` and ``b`` over aligned runs (ValueError on unequal lengths)."""
    if len(a_values) != len(b_values):
        raise ValueError(f"paired runs must align: {len(a_values)} values of {a} vs {len(b_values)} of {b}")
    sign = 1.0 if higher_better else -1.0
    d = [sign * (x - y) for x, y in zip(a_values, b_values)]
    n, gap = len(d), statistics.fmean(d)
    if gap < 0:  # orient better-first
        a, b, d, gap = b, a, [-x for x in d], -gap
    wins = sum(x > 0 for x in d)
    sd = statistics.stdev(d) if n > 1 else 0.0
    if gap == 0:
        t, p = 0.0, 1.0
    elif sd == 0:
        t, p = math.inf, 0.0
    else:
        t = gap / (sd / math.sqrt(n))
        p = min(1.0, 2 * _t_sf(t, n - 1))
    return Paired(a, b, wins, n, gap, t, p)


def holm(pairs: list[Paired]) -> list[Paired]:
    """The same pairs with Holm step-down adjusted p-values (Holm 1979)."""
    m = len(pairs)
    order = sorted(range(m), key=lambda i: pairs[i].p)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pairs[i].p))
        adjusted[i] = running
    return [Paired(p.better, p.worse, p.wins, p.n, p.gap, p.t, p.p, adjusted[i]) for i, p in enumerate(pairs)]


def decide(metric: str, runs: dict[str, list[float] | None], direction: str, alpha: float) -> Decision:
    """Decide one row from each family's recorded values (None or fewer than MIN_RUNS: unranked).

    ``direction``: ``higher`` or ``lower`` is better (``none``: nothing is compared, only estimated)."""
    recorded = {fam: v for fam, v in runs.items() if v is not None and len(v) >= MIN_RUNS}
    unranked = tuple(fam for fam in runs if fam not in recorded)
    estimates = {fam: estimate(v, alpha) for fam, v in recorded.items()}
    if direction == "none" or len(recorded) < 2:
        return Decision(metric, estimates, [], None, unranked, alpha)
    pairs = holm([paired(a, recorded[a], b, recorded[b], direction == "higher")
                  for a, b in combinations(recorded, 2)])
    best = next((fam for fam in recorded
                 if all(p.better == fam and p.separated(alpha) for p in pairs if fam in (p.better, p.worse))), None)
    return Decision(metric, estimates, pairs, None if unranked else best, unranked, alpha)
