"""Image log-likelihoods in one unit, bits per dimension, for every family that has one.

Data are 8-bit images scaled to ``k/255`` in [0, 1], so a model of them must put probability
*mass* on the 256 levels of each of the D = 3·H·W dimensions; ``-log2 p(x) / D`` is then directly
comparable across families and with the uniform model's 8.0 bits/dim.

* Decoder likelihood: a Gaussian around the decoder mean, discretised onto the 256 levels
  (``discretized_gaussian_log_likelihood``), with the σ the model **trained** (``decoder_log_scale``:
  the VAEs' calibrated σ-VAE decoders), so the row scores the decoder that was optimised. A model
  trained on plain MSE has no calibrated σ (the VQ-VAE; a VAE with ``sigma: mse``, whose σ² = ½
  scored every model worse than uniform): for it one global σ is fitted on the **validation** split
  at evaluation time (``calibrate_sigma``).
* Latent variables: the importance-weighted bound (IWAE, Burda et al. 2016) with k draws from the
  encoder; ``iwae_bits_per_dim`` turns the (N, k) log-weights into bits/dim, and the same weights
  give the ELBO (their mean; k = 1 is the plain ELBO). ``iwae_curve`` shows how far the bound
  still falls with k (k up to ~1,000 on a few faces), which is how ``nll_importance_samples`` is chosen.
* VQ-VAE + prior: q(c|x) is a point mass on the encoder's codes, so the bound has one term,
  ``log P(c) + log p(x | c)`` (van den Oord et al. 2017, "Neural Discrete Representation Learning",
  sec. 3.2 and 4.2): code NLL under the PixelCNN prior with attributes marginalised out, plus the
  decoder NLL under the same calibrated discretised Gaussian.

A model takes part by one method, ``importance_samples(x, k, generator)`` (``ImportanceSampled``):
it gives draws ``(decoder mean, log p(z) − log q(z|x))``; everything that depends on the decoder
likelihood and σ stays here, so models never import evaluation.

Every number is computed in float32 (decoder) / float64 (likelihood), never under autocast: a bf16
decoder mean is quantised to 2⁻⁸ of its value, about one 8-bit level, which is the scale the
discretised likelihood resolves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Protocol

import torch

from facegen.runtime import eval_mode

LEVELS = 256  # 8-bit data: x ∈ {0, 1/255, ..., 1}
SIGMA_BOUNDS = (1e-4, 1.0)  # calibrate_sigma's search range, in [0, 1] pixel units (1/255 ≈ 0.0039)


class ImportanceSampled(Protocol):
    def importance_samples(self, x: torch.Tensor, k: int, generator: torch.Generator,
                           with_log_ratio: bool = True) -> Iterable[tuple[torch.Tensor, torch.Tensor | None]]:
        """Up to k draws z ~ q(z|x) for images x (N, C, H, W), each a pair: the decoder mean at z
        (N, C, H, W) in [0, 1] and log p(z) − log q(z|x) in nats (N,), or None when not
        ``with_log_ratio`` (σ calibration needs only the means; a VQ-VAE's prior term is costly).
        A model whose q is a point mass gives one draw whatever k (one draw is then exact)."""
        ...

    def decoder_log_scale(self) -> torch.Tensor | None:
        """log σ of the decoder as trained (broadcastable to the images), or None if not calibrated."""
        ...


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(d)) for d ≤ 0, accurate at both ends (Mächler 2012, "Accurately computing log(1 − exp(−|a|))")."""
    return torch.where(d > -math.log(2), torch.log(-torch.expm1(d)), torch.log1p(-torch.exp(d)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor,
                                        log_scale: torch.Tensor | float) -> torch.Tensor:
    """Per-image log-likelihood in **nats** of 8-bit images under a discretised Gaussian, (N,).

    ``x`` (N, ...) holds values on the grid k/255 in [0, 1]; ``mean`` has the same shape;
    ``log_scale`` = log σ, a scalar or anything broadcastable to ``x``. Level k gets the Gaussian's
    mass on its bin [(k − ½)/255, (k + ½)/255]; the edge bins extend to −∞ (k = 0) and +∞ (k = 255),
    so the 256 masses sum to 1 and a likelihood is at most 0 nats.

    As Salimans et al. 2017 (PixelCNN++, ``discretized_mix_logistic_loss``) and Ho et al. 2020
    (DDPM, ``diffusion_utils_2.discretized_gaussian_log_likelihood``), with two changes for
    accuracy far in the tails instead of their clamps (1e-12 / PixelCNN++'s mid-bin density
    fallback): the exact normal CDF in log space (``torch.special.log_ndtr``), and a bin right of
    the mean computed as its mirror image left of the mean, so both standardised edges a < b sit
    where Φ is small and log(Φ(b) − Φ(a)) = log Φ(b) + log(1 − exp(log Φ(a) − log Φ(b))) keeps its
    precision. The arithmetic is float64.
    """
    x64, mean64 = x.double(), mean.double()
    inv_scale = torch.exp(-torch.as_tensor(log_scale, dtype=torch.float64, device=x64.device))
    half = 0.5 / (LEVELS - 1)
    inf = torch.tensor(math.inf, dtype=torch.float64, device=x64.device)
    lo = torch.where(x64 < half, -inf, (x64 - half - mean64) * inv_scale)   # standardised bin edges;
    hi = torch.where(x64 > 1 - half, inf, (x64 + half - mean64) * inv_scale)  # edge bins are open
    upper = (lo + hi) > 0  # bin right of the mean: use the mirror bin [−hi, −lo] of the lower tail
    a, b = torch.where(upper, -hi, lo), torch.where(upper, -lo, hi)
    log_b = torch.special.log_ndtr(b)
    log_p = log_b + _log1mexp(torch.special.log_ndtr(a) - log_b)
    return log_p.flatten(1).sum(1)


def bits_per_dim(log_likelihood_nats: torch.Tensor | float, dims: int) -> torch.Tensor | float:
    """−log2 p / D: nats per image -> bits per dimension (positive for a negative log-likelihood)."""
    return -log_likelihood_nats / (dims * math.log(2))


def iwae_bits_per_dim(log_weights: torch.Tensor, dims: int) -> torch.Tensor:
    """Importance-weighted NLL bound in bits/dim per image, (N,), from log-weights (N, k) in nats.

    −(logsumexp_j log w_j − log k) / (D ln 2) with log w_j = log p(x, z_j) − log q(z_j|x), z_j ~ q(z|x)
    (Burda et al. 2016, eq. 8). It bounds −log2 p(x)/D from above, tighter as k grows, and equals
    ``bits_per_dim(elbo_nats(w))`` for k = 1.
    """
    k = log_weights.shape[1]
    return bits_per_dim(torch.logsumexp(log_weights.double(), 1) - math.log(k), dims)


def elbo_nats(log_weights: torch.Tensor) -> torch.Tensor:
    """ELBO estimate per image in nats, (N,): the mean of the (N, k) log-weights over the k draws."""
    return log_weights.double().mean(1)


def calibrate_sigma(x: torch.Tensor, mean: torch.Tensor, grid: int = 13, tol: float = 1e-2,
                    chunk: int = 64) -> float:
    """The global decoder scale σ that maximises the discretised Gaussian likelihood of ``x``.

    Call it on the **validation** split at evaluation time: ``x`` (N, C, H, W) validation images on
    the k/255 grid, ``mean`` the decoder means for them (for a VAE at one draw z ~ q(z|x), so σ
    maximises the validation ELBO, whose KL term does not depend on σ; for a VQ-VAE given the
    quantised codes). σ is **not learned in training** (training minimised summed MSE, i.e. a fixed
    σ² = 1/2); fitting it on validation keeps the test split for scoring only. Returns σ in [0, 1]
    pixel units (multiply by 255 for 8-bit levels), within ``SIGMA_BOUNDS``.

    Method: a 1-D search on log σ that maximises the *discretised* likelihood itself: ``grid``
    log-spaced points over ``SIGMA_BOUNDS``, then golden section between the best point's
    neighbours down to ``tol`` in log σ (near the optimum the NLL moves by ~(Δ log σ)² nats per
    dimension, far below any reported digit). Not σ² = validation MSE: that is the maximum of the
    continuous density, which is not what is scored. It is biased where errors are at the scale of
    one 8-bit bin (MSE → 0 sends the density to infinity, while a bin's mass stays ≤ 1), and it
    ignores that pixels at 0 or 255 are scored by a whole tail, not a density; where neither
    matters the two agree (tested). Cost: about ``grid`` + 13 passes over the N·C·H·W values, in
    chunks of ``chunk`` images to keep the float64 temporaries small.
    """
    x, mean = x.detach(), mean.detach()

    def objective(log_sigma: float) -> float:
        return sum(float(discretized_gaussian_log_likelihood(x[i:i + chunk], mean[i:i + chunk], log_sigma).sum())
                   for i in range(0, len(x), chunk))

    lo, hi = math.log(SIGMA_BOUNDS[0]), math.log(SIGMA_BOUNDS[1])
    points = [lo + (hi - lo) * i / (grid - 1) for i in range(grid)]
    values = [objective(p) for p in points]
    best = max(range(grid), key=values.__getitem__)
    a, b = points[max(best - 1, 0)], points[min(best + 1, grid - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = objective(c), objective(d)
    while b - a > tol:
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = objective(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = objective(d)
    found = (c, fc) if fc >= fd else (d, fd)
    return math.exp(max([found, (points[best], values[best])], key=lambda t: t[1])[0])


def _decoder_means(model: ImportanceSampled, images: torch.Tensor, generator: torch.Generator,
                   batch_size: int) -> torch.Tensor:
    """Decoder mean at the first draw z ~ q(z|x) of every image, (N, C, H, W) float32."""
    return torch.cat([next(iter(model.importance_samples(images[i:i + batch_size], 1, generator,
                                                         with_log_ratio=False)))[0].float()
                      for i in range(0, len(images), batch_size)])


def importance_log_weights(model: ImportanceSampled, images: torch.Tensor, k: int, generator: torch.Generator,
                           batch_size: int, log_sigma: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of the importance log-weights of ``images`` (N, C, H, W) 8-bit in [0, 1], in nats,
    each (N, draws) float64: log p(x | z_j) under the discretised Gaussian of scale ``exp(log_sigma)``
    around the decoder mean, and log p(z_j) − log q(z_j | x). Their sum is the log-weight of
    ``iwae_bits_per_dim``; draws = k, or 1 for a point-mass posterior. ``log_sigma`` is the decoder's
    log σ in [0, 1] pixel units (a scalar, or per channel broadcastable to the images), passed by the
    caller so every bound scores the same decoder.
    ``generator`` drives the draws; the images go ``batch_size`` at a time, one decoded draw in
    memory at a time. Run it without autocast (module docstring)."""
    log_px, log_ratio = [], []  # per batch: (n, draws) nats
    with eval_mode(model):  # type: ignore[arg-type]
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size]
            px, ratio = [], []
            for mean, r in model.importance_samples(x, k, generator):
                px.append(discretized_gaussian_log_likelihood(x, mean.float(), log_sigma))
                ratio.append(r.double())
            log_px.append(torch.stack(px, 1))
            log_ratio.append(torch.stack(ratio, 1))
    return torch.cat(log_px), torch.cat(log_ratio)


def likelihood_metrics(model: ImportanceSampled, val_images: torch.Tensor, test_images: torch.Tensor, k: int,
                       generator: torch.Generator, batch_size: int) -> dict[str, float]:
    """Test likelihood of any model with ``importance_samples``, under its trained decoder σ (or one
    calibrated on validation images where it trained none).

    ``val_images`` / ``test_images``: (N, C, H, W) 8-bit images in [0, 1], on the model's device;
    ``k`` draws per test image; ``generator`` drives the draws (validation first, then test). Run it
    without autocast (see the module docstring). Returns means over the test images:

    * ``nll_bits_per_dim``: the k-draw importance-weighted bound on −log2 p(x)/D (headline);
    * ``elbo_nats``: ELBO per image in nats, from the same draws;
    * ``decoder_nll_bits_per_dim`` + ``kl_bits_per_dim`` = −ELBO in bits/dim: E_q[−log p(x|z)] and
      E_q[log q(z|x) − log p(z)] (for a VQ-VAE the latter is −log P(codes) under the prior);
    * ``rate_bits``: E_q[log q(z|x) − log p(z)] / ln 2 per image, the bits the latent carries
      about a face (the rate of Alemi et al. 2018, "Fixing a Broken ELBO"): for a VAE the KL of its
      posterior (estimated from the same k draws), for a VQ-VAE −log2 P(codes) under its prior —
      what an entropy coder driven by the prior would spend. ``kl_bits_per_dim`` is it divided by D;
    * ``decoder_sigma``: the decoder's σ in [0, 1] pixel units (geometric mean over channels): the
      trained one (``model.decoder_log_scale()``), else fitted on ``val_images``;
    * ``iwae_k``: how many draws the model gave per image (1 for a point-mass posterior).
    """
    dims = test_images[0].numel()
    with eval_mode(model):  # type: ignore[arg-type]
        trained = model.decoder_log_scale()
        log_sigma = (trained.to(test_images.device, torch.float64) if trained is not None else
                     torch.tensor(math.log(calibrate_sigma(val_images, _decoder_means(model, val_images, generator,
                                                                                      batch_size)))))
    rec, lat = importance_log_weights(model, test_images, k, generator, batch_size, log_sigma)
    log_w = rec + lat
    return {"nll_bits_per_dim": float(iwae_bits_per_dim(log_w, dims).mean()),
            "elbo_nats": float(elbo_nats(log_w).mean()),
            "decoder_nll_bits_per_dim": float(bits_per_dim(rec.mean(), dims)),
            "kl_bits_per_dim": float(bits_per_dim(lat.mean(), dims)),
            "rate_bits": float(-lat.mean() / math.log(2)),
            "decoder_sigma": float(log_sigma.double().mean().exp()),
            "iwae_k": float(log_w.shape[1])}


def conditional_code_nll_bits_per_dim(model: object, images: torch.Tensor, attrs: torch.Tensor,
                                      batch_size: int) -> float:
    """VQ-VAE only: −log2 P(codes(x) | true attributes) / D under its prior, mean over ``images``.

    ``model`` needs ``codes(x)`` and ``prior.nll_nats(codes, attrs)``. The cost of the codes given
    what the attributes already say; **not** an image likelihood (no decoder term, and conditioned
    on labels): ``nll_bits_per_dim`` of ``likelihood_metrics`` is the VQ-VAE's image NLL.
    """
    dims = images[0].numel()
    with eval_mode(model):  # type: ignore[arg-type]
        nats = torch.cat([model.prior.nll_nats(model.codes(images[i:i + batch_size]),  # type: ignore[attr-defined]
                                               attrs[i:i + batch_size]).double()
                          for i in range(0, len(images), batch_size)])
    return float(bits_per_dim(-nats.mean(), dims))


IWAE_FLAT_TOLERANCE = 1e-3  # bits/dim: a thousandth of the uniform model's 8, below the row's 4th digit


def doubling_ks(k_max: int) -> list[int]:
    """1, 2, 4, ... up to ``k_max`` (≥ 1), with ``k_max`` itself last when it is not a power of two."""
    ks = [1 << i for i in range(k_max.bit_length()) if 1 << i <= k_max]
    return ks if ks[-1] == k_max else [*ks, k_max]


@dataclass(frozen=True)
class IwaeCurve:
    """The k-draw IWAE bound against k on a few faces, all k from one set of draws.

    ``ks`` the doubling grid (``doubling_ks``), increasing; ``per_face`` (N, len(ks)) bits/dim, the bound of each
    face from its first k log-weights; ``bits_per_dim`` their mean over the N faces (the curve).
    """

    ks: tuple[int, ...]
    per_face: tuple[tuple[float, ...], ...]

    @property
    def bits_per_dim(self) -> tuple[float, ...]:
        return tuple(sum(col) / len(col) for col in zip(*self.per_face))

    @property
    def gain(self) -> float:
        """Bound at k = 1 (the ELBO) minus the bound at the largest k, bits/dim (≥ 0 in expectation)."""
        return self.bits_per_dim[0] - self.bits_per_dim[-1]

    def k_flat(self, tolerance: float = IWAE_FLAT_TOLERANCE) -> int:
        """The smallest k of the grid whose bound is within ``tolerance`` bits/dim of the largest k's."""
        curve = self.bits_per_dim
        return next(k for k, b in zip(self.ks, curve) if b - curve[-1] <= tolerance)

    def metrics(self, nll_k: int) -> dict[str, float]:
        """Gain, flat k and, when ``nll_k`` (the NLL row's k) is on the grid, how far the bound at
        ``nll_k`` is above the largest k's: what the NLL row would still fall with more draws."""
        out = {"iwae_curve_gain_bits_per_dim": self.gain, "iwae_k_flat": float(self.k_flat())}
        if nll_k in self.ks:
            out["iwae_gap_at_nll_k_bits_per_dim"] = self.bits_per_dim[self.ks.index(nll_k)] - self.bits_per_dim[-1]
        return out


def iwae_curve(model: ImportanceSampled, images: torch.Tensor, k_max: int, generator: torch.Generator,
               batch_size: int, log_sigma: torch.Tensor | float, extra_ks: tuple[int, ...] = ()) -> IwaeCurve:
    """The IWAE bound (Burda et al. 2016, eq. 8) of ``images`` for k = 1, 2, 4, ... ``k_max`` and
    the ``extra_ks`` up to ``k_max`` (e.g. the NLL row's k).

    One set of ``k_max`` log-weights per image (``importance_log_weights``, same decoder likelihood
    and ``log_sigma`` as ``likelihood_metrics``), and the bound at k from its first k: k_max decodes
    per image, not the sum over the grid. Each point is an unbiased sample of the k-draw bound, whose
    expectation does not increase with k (Burda et al. 2016, Theorem 1); points share draws, so the
    measured curve is smooth but need not be monotone on few images. A point-mass posterior (one
    draw) gives the one-point curve k = 1. ``images`` (N, C, H, W) 8-bit in [0, 1].
    """
    rec, lat = importance_log_weights(model, images, k_max, generator, batch_size, log_sigma)
    log_w, dims = rec + lat, images[0].numel()
    ks = sorted(set(doubling_ks(log_w.shape[1])) | {k for k in extra_ks if k <= log_w.shape[1]})
    bounds = torch.stack([iwae_bits_per_dim(log_w[:, :k], dims) for k in ks], 1)  # (N, len(ks))
    return IwaeCurve(tuple(ks), tuple(tuple(map(float, row)) for row in bounds))
