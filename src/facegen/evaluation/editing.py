"""Scores for latent attribute edits, judged by the attribute classifier, on matched terms.

Every family finds a direction per attribute in its own way: VAEs by the mean difference of
encoded faces with and without it (the notebook's vectors, latent/attributes.py), the GAN by the
unit normal of a linear boundary fitted on classifier-labelled prior samples (InterFaceGAN, Shen
et al. 2020; latent/boundaries.py). Those vectors have unrelated lengths, so scoring each family at
one hand-picked strength compares a strong edit with a weak one: the strong one "wins" success while
flipping other attributes, the weak one wins any "distance moved" metric by failing to move.

Here every family is scored by a **strength sweep in comparable units**:

* each direction is normalised to unit length, and stepped by ``alpha * scale``, where ``scale`` is
  the family's typical distance between two start latents (``latent_scale``: mean of
  ``||z_i - z_{i-1}||``). ``alpha`` is thus "the fraction of the way to another face": latent
  dimension and the overall scale of the latent space cancel out, for prior samples (GAN) and
  posterior means (VAE, VQ-VAE) alike;
* each face is pushed *towards the opposite* of what the classifier sees on its unedited decode
  (absent -> add the direction, present -> subtract it; ``opposite_edit``), and at each alpha we
  record **success** (fraction of faces whose target decision flipped) and **preservation**
  (fraction of (face, other attribute) decisions unchanged). alpha = 0 is the point (1, 0) by
  definition: the reference is the decoded start latent, not the photo, so reconstruction error is
  not counted as an edit effect, and GAN edits (which start from prior samples) are scored alike;
* **chance**: the same sweep along random directions of the same step. A random direction is the
  normalised difference of two random start latents (``random_directions``): "moving the same
  distance towards some other face". It lives where the faces vary, as the scale does, so a family
  whose latent has dead dimensions (inactive VAE units) is not flattered by an isotropic direction
  that mostly moves through them. ``chance_directions`` directions are drawn and face ``i`` moves
  along direction ``i mod chance_directions`` (``chance_owner``), decoded once with each sign and
  reused for every target attribute (the sign rule picks per face). The chance curve is thus the
  mean over (face, random direction) pairs, as when every face moved along every direction, but
  with one pair per face: its spread between draws comes mostly from the directions, so it is their
  number that counts (16 by default; 4 let a per-attribute chance value move by up to 0.12 between
  runs), at the cost of two attribute sweeps instead of ``2 * chance_directions``.
* **categorical attributes**: some attributes are the values of one categorical factor (hair
  colour: the embedded faces are blond, black, brown or grey haired, exactly one, so Blond_Hair and
  Black_Hair are never both on). A correct Blond_Hair edit of a black-haired face must switch
  Black_Hair off, which is not a failure to preserve it. ``exclusive_groups`` (params
  ``evaluate.edit_exclusive_groups``) names such groups: when the target is a member, the other
  members are left out of its preservation, for the attribute and the chance sweep alike.

The default alphas double from 1/32 to 1: the trained families cross the 90% budget at very
different steps (DCGAN boundary normals near alpha 0.05-0.1, VAE mean-difference directions near
0.2-0.75 on the default run), and a log-spaced sweep brackets both with six points, so the headline
is an interpolation between measured points rather than an extrapolation from (1, 0). For scale:
the old fixed strengths were alpha ~0.21 (DCGAN, 3.0 x unit normal) and ~0.27 (VAE, 1.5 x vector).

Summaries are read off the (preservation, success) curve, never off one strength:

* ``success_within_budget``: the best success the curve reaches while keeping at least
  ``preservation`` of the other attributes (piecewise-linear in alpha; the crossing segment is
  interpolated). Choosing the best strength is what a user of the edit would do, and it makes the
  number independent of which alphas happen to be in the sweep as long as they bracket the
  crossing. An edit that never moves scores 0: there is no credit for failing to move.

Metrics (``SweepResult.metrics``; all in [0, 1], **higher is better** unless said otherwise):

* ``edit_success_at_pres90_mean`` - the **headline**: per attribute, the best success while keeping
  >= 90% of the other attributes, averaged over attributes. One number that already prices in the
  cost of an edit: success bought by flipping other attributes does not count. 90% is one
  attribute flipped in ten among the others: visibly "the same face with one thing changed".
* ``edit_success_at_pres90_<Attr>`` - the same per attribute (detail rows).
* ``edit_success_auc_mean`` - the one secondary: the budget-limited success averaged over every
  preservation budget from 100% down to 70% (area under success vs 1 - preservation over [0, 0.3],
  divided by 0.3). It says whether the headline depends on the 90% threshold.
* ``edit_chance_at_pres90_mean`` - the headline's value for random directions (direction: none, a
  reference line): the report can say a family's edits are "above chance" when the headline exceeds
  it.
* ``edit_chance_at_pres90_<Attr>`` - the same per attribute: the line each attribute's success must
  clear (``comparison.expectations`` checks every family and attribute against it).

When a curve never drops to the budget within the sweep, its value is the best success over the
whole sweep, a lower bound of what a larger step would reach; ``SweepResult.notes`` says so.

**Can the judge read the decodes?** The classifier is trained on real faces; every edit is judged
on a decode. ``judge_readability`` scores its decisions against the true labels on test faces and
on a family's reconstructions of the same faces (``judge_accuracy_real``,
``judge_accuracy_recon``, mean over attributes, and per attribute): a judge that cannot read a
family's decodes cannot score its edits. The gap mixes the judge's trouble with decoded images
(blur, artefacts) and attributes the reconstruction itself loses; either way, edit scores of such
an attribute say as much about the judge as about the edit. A note flags gaps above
``JUDGE_GAP`` (0.10 = 1 - ``PRESERVATION_TARGET``): a judge that misreads one decode in ten more
than it misreads real faces errs by as much as the headline's whole preservation budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import torch

DEFAULT_ALPHAS: tuple[float, ...] = (0.03125, 0.0625, 0.125, 0.25, 0.5, 1.0)  # doublings: see the module doc
PRESERVATION_TARGET = 0.9  # the headline's budget: at most 10% of the other attribute decisions change
AUC_BUDGET = 0.3           # the secondary averages budgets 1 - preservation in [0, AUC_BUDGET]
CHANCE_DIRECTIONS = 16     # random directions of the chance line (face i moves along direction i mod 16)
JUDGE_GAP = 1 - PRESERVATION_TARGET  # judge accuracy lost on decodes that the report flags: see the module doc

Decode = Callable[[torch.Tensor], torch.Tensor]


class Judge(Protocol):
    """What editing needs from the attribute classifier (tests substitute a toy)."""

    attributes: Sequence[str]

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor: ...


def _edited(z: torch.Tensor, direction: torch.Tensor, strength: float, present: torch.Tensor) -> torch.Tensor:
    """The latents ``opposite_edit`` decodes: ``z`` moved by ``strength`` x ``direction`` towards the
    opposite of ``present``."""
    sign = 1.0 - 2.0 * present.float()  # +1 where absent, -1 where present
    return z + strength * sign[:, None].to(z.device, z.dtype) * direction.to(z.device, z.dtype).flatten()


def opposite_edit(decode: Decode, z: torch.Tensor, direction: torch.Tensor,
                  strength: float, present: torch.Tensor) -> torch.Tensor:
    """Decoded edits of flat latents ``z`` (N, D): ``strength`` x ``direction`` (D,) added where the
    attribute is absent (``present``: bool (N,), the judge's decision on the unedited decode) and
    subtracted where present, so every face is pushed towards the opposite of what it shows.

    ``strength`` is in the units of ``direction``: pass a unit direction and ``alpha * scale`` for the
    sweep's step (``latent_scale``)."""
    return decode(_edited(z, direction, strength, present))


def unit(direction: torch.Tensor) -> torch.Tensor:
    """``direction`` flattened to (D,) and scaled to length 1 (a zero vector stays zero)."""
    d = direction.detach().float().flatten()
    return d / d.norm().clamp_min(1e-12)


def latent_scale(z: torch.Tensor) -> float:
    """Typical distance between two start latents (N >= 2, flat (N, D)): mean ``||z_i - z_{i-1}||``.

    The latent length of alpha = 1, "as far as another face"; in the latent's own units."""
    if len(z) < 2:
        raise ValueError("latent_scale needs at least two start latents")
    z = z.detach().float().flatten(1)
    return float((z - z.roll(1, 0)).norm(dim=1).mean())


def chance_owner(n: int, k: int) -> torch.Tensor:
    """(n,) index of the random direction each of ``n`` faces moves along in the chance sweep:
    face ``i`` takes direction ``i mod k``, so every direction moves about ``n / k`` faces."""
    return torch.arange(n) % k


def random_directions(z: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """(k, D) unit directions ``z_i - z_j`` between random distinct start latents (flat (N, D), N >= 2).

    Drawn on the CPU from ``generator`` (the same generator state gives the same directions)."""
    n = len(z)
    if n < 2:
        raise ValueError("random_directions needs at least two start latents")
    i = torch.randint(n, (k,), generator=generator)
    j = (i + torch.randint(1, n, (k,), generator=generator)) % n  # j != i
    zc = z.detach().float().flatten(1).cpu()
    return torch.stack([unit(zc[a] - zc[b]) for a, b in zip(i.tolist(), j.tolist())])


@dataclass(frozen=True)
class BudgetPoint:
    """The best point of a curve within a preservation budget (see ``success_within_budget``)."""

    success: float
    alpha: float     # the (interpolated) alpha of that point: the operating strength
    reached: bool    # whether the curve dropped to the budget within the sweep (False: a lower bound)


def success_within_budget(alphas: Sequence[float], success: Sequence[float], preservation: Sequence[float],
                          target: float = PRESERVATION_TARGET) -> BudgetPoint:
    """The highest success on the piecewise-linear curve ``alpha -> (preservation, success)`` among
    its points with ``preservation >= target``, segments crossing ``target`` interpolated linearly.

    ``alphas`` must start with the unedited point (0, preservation 1, success 0), which is always
    within budget, so an edit that never flips anything scores 0. Ties go to the smallest alpha
    (the weakest edit achieving the best success). For a curve whose preservation falls
    monotonically this is the success interpolated at ``preservation == target``; for one that dips
    and recovers it is the upper envelope. ``reached`` is False when no point falls below
    ``target``: the value is then the best over the whole sweep, a lower bound for larger steps.
    """
    if not (len(alphas) == len(success) == len(preservation)) or not alphas:
        raise ValueError("alphas, success and preservation must be non-empty and of equal length")
    cands: list[tuple[float, float]] = []  # (success, alpha)
    reached = False
    for k, (a, s, p) in enumerate(zip(alphas, success, preservation)):
        if p >= target:
            cands.append((s, a))
        else:
            reached = True
        if k and (preservation[k - 1] >= target) != (p >= target):  # this segment crosses the target
            a0, s0, p0 = alphas[k - 1], success[k - 1], preservation[k - 1]
            t = (p0 - target) / (p0 - p)
            cands.append((s0 + t * (s - s0), a0 + t * (a - a0)))
    if not cands:  # only if the first point is already out of budget (alphas without the unedited 0)
        return BudgetPoint(0.0, float(alphas[0]), True)
    best = max(cands, key=lambda c: (c[0], -c[1]))
    return BudgetPoint(float(best[0]), float(best[1]), reached)


def budget_auc(alphas: Sequence[float], success: Sequence[float], preservation: Sequence[float],
               budget: float = AUC_BUDGET, steps: int = 300) -> float:
    """Mean of ``success_within_budget`` over preservation budgets ``1 - b`` for b in [0, ``budget``]:
    the area under best success vs allowed loss of preservation, normalised to [0, 1] (midpoint rule,
    ``steps`` budgets)."""
    b = [(i + 0.5) * budget / steps for i in range(steps)]
    return sum(success_within_budget(alphas, success, preservation, 1.0 - x).success for x in b) / steps


def preserved_attributes(judged: Sequence[str], target: str,
                         exclusive_groups: Sequence[Sequence[str]] = ()) -> list[int]:
    """Indices into ``judged`` of the attributes an edit of ``target`` should leave alone: all but
    the target and the other members of any ``exclusive_groups`` group holding it (one categorical
    factor: switching one value on switches the others off)."""
    tied = {target}.union(*(g for g in exclusive_groups if target in g))
    return [i for i, name in enumerate(judged) if name not in tied]


def _flip_rates(p_edit: torch.Tensor, p_src: torch.Tensor, a: int, others: Sequence[int]) -> tuple[float, float]:
    """(success on attribute ``a``, preservation of the ``others``) between two (N, A) bool decisions."""
    success = float((p_edit[:, a] != p_src[:, a]).float().mean())
    kept = float((p_edit[:, others] == p_src[:, others]).float().mean()) if others else 1.0
    return success, kept


@dataclass
class SweepResult:
    """What ``edit_sweep`` returns: flat metrics, the raw curves (JSON-serialisable) and remarks."""

    metrics: dict[str, float]
    curves: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def step(self, name: str) -> float:
        """Latent length of ``name``'s operating edit (alpha at the headline's budget x scale):
        the unit direction times this is the edit the headline scores."""
        return self.curves["attributes"][name]["alpha_at_target"] * self.curves["scale"]


def _pct(target: float) -> str:
    return f"{round(100 * target):d}"


def edit_sweep(decode: Decode, judge: Judge, z: torch.Tensor, directions: dict[str, torch.Tensor],
               generator: torch.Generator, alphas: Sequence[float] = DEFAULT_ALPHAS,
               chance_directions: int = CHANCE_DIRECTIONS,
               preservation: float = PRESERVATION_TARGET,
               exclusive_groups: Sequence[Sequence[str]] = ()) -> SweepResult:
    """Success and preservation of every attribute's edit over a sweep of comparable strengths.

    Args:
        decode: flat latents (N, D) -> images (N, C, H, W) for ``judge`` (batching is its business).
        judge: the attribute classifier; decisions are ``predict_proba > 0.5``.
        z: start latents, flat (N, D), N >= 2: test-face encodings (VAEs) or prior samples (GAN).
        directions: attribute name -> direction (D,) of any length (normalised here). Names the
            judge does not know are left out; an empty result when none is left.
        generator: seeds the random directions of the chance line (CPU generator).
        alphas: positive step sizes in units of ``latent_scale(z)``, strictly increasing.
        chance_directions: random directions of the chance curve (>= 1; at most N are used: face
            ``i`` moves along direction ``i mod chance_directions``).
        preservation: the headline's budget (0.9 -> metric names ``..._at_pres90_...``).
        exclusive_groups: groups of attributes that are one categorical factor; an edit of a member
            is not charged for the other members' flips (``preserved_attributes``).

    Returns:
        ``SweepResult`` with metrics ``edit_success_at_pres{P}_<Attr>``, ``edit_success_at_pres{P}_mean``
        (headline, higher is better), ``edit_success_auc_mean`` (secondary, higher is better) and
        ``edit_chance_at_pres{P}_mean`` (reference, no direction); and ``curves``::

            {"alphas": [0.0, *alphas], "scale": float, "preservation_target": float,
             "chance_directions": int (the number used), "exclusive_groups": [[name, ...], ...],
             "attributes": {name: {"success": [...], "preservation": [...], "success_at_target": float,
                                   "alpha_at_target": float, "reached": bool}},
             "chance": {name: {"success": [...], "preservation": [...], "success_at_target": float}}}

        where every list has one value per alpha (alpha 0 included: success 0, preservation 1).

    Cost: ``1 + len(alphas) * (len(directions) + 2)`` decodes and judgements of N faces.
    """
    alphas = [float(a) for a in alphas]
    if not alphas or alphas[0] <= 0 or any(b <= a for a, b in zip(alphas, alphas[1:])):
        raise ValueError(f"alphas must be positive and strictly increasing, got {alphas}")
    if chance_directions < 1:
        raise ValueError("chance_directions must be >= 1")
    judged = list(judge.attributes)
    names = [n for n in directions if n in judged]
    if not names:
        return SweepResult({}, {})
    z = z.detach().flatten(1)
    scale = latent_scale(z)

    def decisions(latents: torch.Tensor) -> torch.Tensor:
        return judge.predict_proba(decode(latents)) > 0.5

    p_src = decisions(z)
    grid = [0.0, *alphas]
    pct = _pct(preservation)
    groups = [list(g) for g in exclusive_groups]
    others = {n: preserved_attributes(judged, n, groups) for n in names}
    k = min(chance_directions, len(z))
    curves: dict[str, Any] = {"alphas": grid, "scale": scale, "preservation_target": preservation,
                              "chance_directions": k, "exclusive_groups": groups, "attributes": {}, "chance": {}}
    metrics: dict[str, float] = {}
    notes: list[str] = []
    for name in names:
        a, d = judged.index(name), unit(directions[name])
        rates = [(0.0, 1.0)] + [_flip_rates(decisions(_edited(z, d, alpha * scale, p_src[:, a])), p_src, a, others[name])
                                for alpha in alphas]
        succ, pres = [r[0] for r in rates], [r[1] for r in rates]
        point = success_within_budget(grid, succ, pres, preservation)
        curves["attributes"][name] = {"success": succ, "preservation": pres, "success_at_target": point.success,
                                      "alpha_at_target": point.alpha, "reached": point.reached,
                                      "auc": budget_auc(grid, succ, pres)}
        metrics[f"edit_success_at_pres{pct}_{name}"] = point.success
        if not point.reached:
            notes.append(f"Edits of {name} keep >= {pct}% of the other attributes up to the largest step "
                         f"(alpha {alphas[-1]:g}): edit_success_at_pres{pct}_{name} = {point.success:.3g} is the "
                         "best success of the sweep, a lower bound for larger steps.")
    # Chance: face i moves along random direction i mod k, decoded once with + and once with -, the
    # sign picked per face and target attribute exactly as opposite_edit would (+ where the target is absent).
    r = random_directions(z, k, generator)[chance_owner(len(z), k)].to(z.device, z.dtype)
    chance_rates: dict[str, list[tuple[float, float]]] = {n: [(0.0, 1.0)] for n in names}
    for alpha in alphas:
        plus, minus = decisions(z + alpha * scale * r), decisions(z - alpha * scale * r)
        for name in names:
            a = judged.index(name)
            chance_rates[name].append(_flip_rates(torch.where(p_src[:, a, None], minus, plus), p_src, a, others[name]))
    chance_points = []
    for name in names:
        succ, pres = [v[0] for v in chance_rates[name]], [v[1] for v in chance_rates[name]]
        point = success_within_budget(grid, succ, pres, preservation)
        curves["chance"][name] = {"success": succ, "preservation": pres, "success_at_target": point.success}
        metrics[f"edit_chance_at_pres{pct}_{name}"] = point.success
        chance_points.append(point.success)
    per_attr = [curves["attributes"][n] for n in names]
    metrics[f"edit_success_at_pres{pct}_mean"] = sum(c["success_at_target"] for c in per_attr) / len(names)
    metrics["edit_success_auc_mean"] = sum(c["auc"] for c in per_attr) / len(names)
    metrics[f"edit_chance_at_pres{pct}_mean"] = sum(chance_points) / len(names)
    return SweepResult(metrics, curves, notes)


@dataclass
class Readability:
    """What ``judge_readability`` returns: flat metrics and the remark for the report (if any)."""

    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)


def judge_accuracy(judge: Judge, images: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-attribute accuracy (A,) of the judge's decisions (``predict_proba > 0.5``) on ``images``
    (N, C, H, W) in [0, 1] against the true labels ``truth`` (N, A), 0/1, columns in
    ``judge.attributes`` order."""
    decided = (judge.predict_proba(images) > 0.5).cpu()
    return (decided == truth.cpu().bool()).float().mean(0)


def judge_readability(judge: Judge, real: torch.Tensor, decoded: torch.Tensor, truth: torch.Tensor,
                      attr_names: Sequence[str], family: str, gap: float = JUDGE_GAP) -> Readability:
    """The judge's accuracy against the true labels on real faces and on a family's decodes of them.

    Args:
        judge: the attribute classifier that scores the edits.
        real: test faces (N, C, H, W) in [0, 1].
        decoded: the family's reconstructions of the same faces, same shape.
        truth: the faces' true labels (N, len(attr_names)), 0/1.
        attr_names: the columns of ``truth``; attributes the judge does not know are left out.
        family: named in the note.
        gap: accuracy lost on the decodes (real - decoded) above which the note flags an attribute
            (and the mean); ``JUDGE_GAP`` by default (see the module doc).

    Returns:
        ``Readability`` with metrics ``judge_accuracy_real``, ``judge_accuracy_recon`` (means over
        attributes, in [0, 1]) and ``judge_accuracy_{real,recon}_<Attr>``; a note naming the
        attributes (and the mean) whose accuracy drops by more than ``gap`` on the decodes.
    """
    names = [n for n in judge.attributes if n in attr_names]
    if not names:
        return Readability({})
    cols = [list(judge.attributes).index(n) for n in names]
    labels = torch.zeros(len(truth), len(judge.attributes))
    labels[:, cols] = truth[:, [list(attr_names).index(n) for n in names]].float().cpu()
    acc = {"real": judge_accuracy(judge, real, labels)[cols], "recon": judge_accuracy(judge, decoded, labels)[cols]}
    metrics = {f"judge_accuracy_{kind}": float(a.mean()) for kind, a in acc.items()}
    for kind, a in acc.items():
        metrics.update({f"judge_accuracy_{kind}_{n}": float(v) for n, v in zip(names, a)})
    lost = {n: float(r - d) for n, r, d in zip(names, acc["real"], acc["recon"]) if r - d > gap}
    mean_lost = metrics["judge_accuracy_real"] - metrics["judge_accuracy_recon"]
    if not lost and mean_lost <= gap:
        return Readability(metrics)
    worst = ", ".join(f"{n} {metrics[f'judge_accuracy_real_{n}']:.2f} -> {metrics[f'judge_accuracy_recon_{n}']:.2f}"
                      for n in sorted(lost, key=lost.get, reverse=True))
    head = (f"The judge reads {family}'s reconstructions {mean_lost:.2f} less accurately than the test faces "
            f"(judge_accuracy_recon {metrics['judge_accuracy_recon']:.3f} vs judge_accuracy_real "
            f"{metrics['judge_accuracy_real']:.3f}, mean over attributes, {len(real)} faces)"
            if mean_lost > gap else f"On {family}'s reconstructions the judge loses more than {gap:.2f} accuracy")
    return Readability(metrics, [
        f"{head}; by attribute: {worst or 'none above the threshold'}. A judge that cannot read a family's "
        f"decodes cannot score its edits: {family}'s edit scores of these attributes say as much about the "
        f"judge as about the edits (or the decoder loses the attribute). Flagged above a loss of {gap:.2f}, "
        "the headline's preservation budget: misreading one decode in ten more than real faces is an error "
        "as large as all the flips an edit may cause."])
