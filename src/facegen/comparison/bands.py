"""The CI gate's band: how far a fresh run may fall from the recorded runs before it is a regression.

For one gated metric with recorded values ``v_1..v_n`` (``metrics_noise.json``), on the metric's
scale ``g`` (``MetricSpec.scale``: the log for ratios such as KID or recall, whose spread grows with
their size, so a collapse to 0 lies infinitely far away), a fresh run ``x`` regresses when it moved
from the runs' mean in the bad direction by more than::

    band = max(k * sd, floor_rel * |mean|),   k = t_{n-1}(1 - false_alarm / G) * sqrt(1 + 1/n)

where mean and sd are those of ``g(v)``. ``k * sd`` is a one-sided Student-t *prediction* bound:
under "nothing changed but the arithmetic" (another seed, CPU kind or precision) ``x`` is one more
draw of the distribution the n runs sampled, and ``(g(x) - mean) / (sd * sqrt(1 + 1/n))`` follows
Student's t with n - 1 degrees of freedom. ``G`` is the number of metrics one gate run checks, so a
no-change rerun fails *any* of them with probability at most ``false_alarm`` (Bonferroni; the
metrics are correlated, so the real rate is lower). Centring on the runs' mean rather than on the one
committed run is what buys the teeth: the committed run is itself a draw, and measuring against it
would widen every band by sqrt(2) / sqrt(1 + 1/n) (1.32 at n = 7). Gating about 20 headline metrics
rather than 100 narrows ``k`` further (4.7 instead of 6.4 at n = 7). The same rule gates the leads the
report's decisions rest on (``ci.metric_gate.Contrast``). ``floor_rel`` keeps metrics that
did not move in n runs (a saturated accuracy) from a zero-width band.

Same machine kind: runs are bit-for-bit deterministic for the same CPU kind, torch build and
precision (tests/test_vae.py::test_same_params_same_metrics; fresh clones reproduce every committed metrics file byte for
byte). When a fresh run's ``runtime.machine_kind`` equals the committed run's, the gate expects exactly
the committed values (``SAME_KIND_RTOL``), the tightest band there is.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from facegen.comparison.noise import Spread, spread_of

SAME_KIND_RTOL = 1e-9  # JSON round trips are exact; this only absorbs float printing


@dataclass(frozen=True)
class GateRule:
    """``band = max(k * sd, floor_rel * |mean|)``; see the module docstring for why."""

    false_alarm: float = 0.05
    floor_rel: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.false_alarm < 1:
            raise ValueError(f"false_alarm must lie in (0, 1), got {self.false_alarm}")

    def k(self, n: int, gated: int, two_sided: bool = False) -> float:
        """Band width in measured sds for a spread over ``n`` runs when ``gated`` metrics are checked."""
        return prediction_k(n, max(gated, 1), self.false_alarm / (2 if two_sided else 1))

    def band(self, spread: Spread, gated: int, two_sided: bool = False) -> float:
        """Allowed move of one metric from the runs' mean, on the spread's scale."""
        return max(self.k(spread.n, gated, two_sided) * spread.sd, self.floor_rel * abs(spread.mean))


@functools.lru_cache(maxsize=None)
def prediction_k(n: int, gated: int, false_alarm: float) -> float:
    """``t_{n-1}(1 - false_alarm / gated) * sqrt(1 + 1/n)``: the one-sided Bonferroni prediction bound
    for one new draw against the mean of ``n`` runs, in units of their sd (``n >= 2``)."""
    if n < 2:
        raise ValueError(f"an sd needs at least 2 runs, got n = {n}")
    from scipy.stats import t  # local import: scipy.stats costs ~0.5 s, and only the gate and the report need it

    return float(t.ppf(1.0 - false_alarm / gated, n - 1)) * math.sqrt(1.0 + 1.0 / n)


def scaled_spread(values: list[float], transform) -> Spread:  # noqa: ANN001 - MetricSpec.transform
    """The spread of the recorded values on the metric's gating scale."""
    return spread_of([transform(v) for v in values])
