"""VAE and β-VAE: one class, β only weights the KL term.

Reference architecture is the notebook's: a stack of stride-2 4x4 convs (BatchNorm, LeakyReLU 0.2)
down to a small spatial map, linear heads for μ and log σ², and the mirrored transposed-conv
decoder ending in a sigmoid. Widths and latent size come from params so the default pipeline can
use a narrower network than the notebook's (32-64-128-256, z=128) and still fit the CPU budget.

Loss: the negative ELBO, −log p(x|z) + β·KL(q(z|x) || N(0, I)), with a **calibrated** Gaussian
decoder p(x|z) = N(x; decoder(z), σ²I) (``DecoderScale``; Rybkin, Daniilidis & Levine 2021, "Simple
and Effective VAE Training with Calibrated Decoders", the σ-VAE). With σ matched to the
reconstruction error, β = 1 is the true ELBO and β weighs the KL against a likelihood, as in
Higgins et al. 2017. The notebook's summed pixel MSE + β·KL is ``sigma: mse``: a Gaussian decoder
with σ² fixed at ½, so against the σ its errors really have the KL weight is β_eff = β / (2σ²)
(β = 1 at σ = 0.064 is β_eff ≈ 122: a heavily regularised "VAE").

Values are per image (divided by the batch size) so logged numbers do not depend on the batch size.
"""
from __future__ import annotations

import math
from typing import ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from facegen import distributed
from facegen.config import VAEConfig
from facegen.data.dataset import Batch
from facegen.models.base import (EDIT, ENCODE, LIKELIHOOD, RECONSTRUCT, TRAVERSE, GenerativeModel,
                                 SingleLossTraining)
from facegen.runtime import to_device


def _encoder(widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for w in widths:
        layers += [nn.Conv2d(c_in, w, 4, 2, 1), nn.BatchNorm2d(w), nn.LeakyReLU(0.2, inplace=True)]
        c_in = w
    return nn.Sequential(*layers)


def _decoder(widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    rev = widths[::-1]
    for c_in, c_out in zip(rev, rev[1:]):
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    layers += [nn.ConvTranspose2d(rev[-1], 3, 4, 2, 1), nn.Sigmoid()]
    return nn.Sequential(*layers)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) || N(0, 1)) per latent dimension, shape (N, D)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


# Floor of log σ: σ ≥ 0.0025, about 0.6 of one 8-bit level. A continuous density's σ can shrink
# without bound on near-perfect pixels; Rybkin et al.'s reference code soft-clips log σ at −6 too.
LOG_SIGMA_MIN = -6.0
# Weight of each training batch in the optimal-σ decoder's running σ (as BatchNorm's running
# statistics): evaluation scores the σ the decoder ended training with, not one fitted afterwards.
SIGMA_MOMENTUM = 0.1
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class DecoderScale(nn.Module):
    """σ of the Gaussian decoder N(x; mean, σ²I), one shared or one per channel, and its NLL.

    ``mode``: ``optimal`` — σ² is the batch's MSE (the analytic maximiser of the likelihood, the
    σ-VAE's "optimal σ"; no parameter to learn, so it is calibrated from the first step), tracked
    as a running value for evaluation; ``learned`` — log σ is a parameter trained with the model;
    ``mse`` — fixed σ² = ½, where the NLL is the notebook's summed squared error plus the constant
    D·½·log π. ``channels`` is 1 (shared) or the image's channel count.
    """

    def __init__(self, mode: str, channels: int) -> None:
        super().__init__()
        self.mode = mode
        init = torch.full((channels,), 0.5 * math.log(0.5) if mode == "mse" else 0.0)
        if mode == "learned":
            self.log_sigma = nn.Parameter(init)
        else:
            self.register_buffer("log_sigma", init)

    def current(self) -> torch.Tensor:
        """log σ, shape (C,) (C = 1 when shared): the learned one soft-clipped at ``LOG_SIGMA_MIN``
        (as the reference code, so its gradient never vanishes), the others as stored."""
        if self.mode == "learned":
            return LOG_SIGMA_MIN + F.softplus(self.log_sigma - LOG_SIGMA_MIN)
        return self.log_sigma

    def nll(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """−log N(x; mean, σ²I) per image in nats, summed over all dimensions, (N,) float32.

        ``x``, ``mean``: (N, C, H, W). In training mode an ``optimal`` scale is this batch's RMS
        error (detached: at the optimum its gradient is zero anyway; under torchrun the global
        batch's, so every rank keeps the same running σ) and updates the running σ."""
        err2 = (x.float() - mean.float()).pow(2)
        if self.mode == "optimal" and self.training:
            dims = (0, 2, 3) if self.log_sigma.numel() > 1 else (0, 1, 2, 3)
            mse = err2.detach().mean(dims)
            if distributed.group_size() > 1:  # torchrun: the global batch's MSE, as one process on it sees
                count = torch.full((1,), err2.numel() / mse.numel(), device=mse.device)
                total = torch.cat([mse * count, count])
                distributed.sum_across_ranks_(total)
                mse = total[:-1] / total[-1]
            mse = mse.clamp_min(math.exp(2 * LOG_SIGMA_MIN))
            log_sigma = 0.5 * mse.log()
            with torch.no_grad():
                running = (1 - SIGMA_MOMENTUM) * torch.exp(2 * self.log_sigma) + SIGMA_MOMENTUM * mse
                self.log_sigma.copy_(0.5 * running.log())
        else:
            log_sigma = self.current()
        ls = log_sigma.view(1, -1, 1, 1)
        return (0.5 * err2 * torch.exp(-2 * ls) + ls + LOG_SQRT_2PI).flatten(1).sum(1)


class VAE(SingleLossTraining, GenerativeModel):
    capabilities: ClassVar[frozenset[str]] = frozenset({ENCODE, RECONSTRUCT, EDIT, TRAVERSE, LIKELIHOOD})

    def __init__(self, family: str, cfg: VAEConfig, image_size: int) -> None:
        super().__init__(family, cfg, image_size)
        self.spatial = image_size // 2 ** len(cfg.widths)
        if self.spatial < 1:
            raise ValueError(f"models.{family}.widths: {len(cfg.widths)} stride-2 layers are too many "
                             f"for image_size {image_size}")
        flat = cfg.widths[-1] * self.spatial ** 2
        self.encoder = _encoder(cfg.widths)
        self.fc_mu = nn.Linear(flat, cfg.latent_dim)
        self.fc_logvar = nn.Linear(flat, cfg.latent_dim)
        self.decoder_input = nn.Linear(cfg.latent_dim, flat)
        self.decoder = _decoder(cfg.widths)
        self.scale = DecoderScale(cfg.sigma, 3 if cfg.sigma_per_channel else 1)

    # -- latent space -------------------------------------------------------------------------
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean: the deterministic code used for edits, interpolation and traversals."""
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.decoder_input(z).view(z.shape[0], self.cfg.widths[-1], self.spatial, self.spatial)
        return self.decoder(h)

    def latent_prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        device = next(self.parameters()).device
        return to_device(torch.randn(n, self.cfg.latent_dim, generator=generator), device)

    def sample(self, n: int, generator: torch.Generator, attrs: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.latent_prior(n, generator))

    # -- training -------------------------------------------------------------------------------
    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = batch.images
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        rec = self.scale.nll(x, self.decode(z)).mean()
        kl = kl_per_dim(mu.float(), logvar.float()).sum(1).mean()
        return {"loss": rec + self.cfg.beta * kl, "recon": rec, "kl": kl, "elbo": -(rec + kl),
                "sigma": torch.exp(self.scale.current().detach()).mean()}

    def decoder_log_scale(self) -> torch.Tensor | None:
        """log σ of the decoder as trained, (1, C, 1, 1); None for ``sigma: mse``, whose fixed
        σ² = ½ is not a calibrated likelihood (evaluation then fits σ on validation)."""
        return None if self.cfg.sigma == "mse" else self.scale.current().detach().view(1, -1, 1, 1)

    # -- likelihood -----------------------------------------------------------------------------
    def importance_samples(self, x: torch.Tensor, k: int, generator: torch.Generator,
                           with_log_ratio: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """k draws z ~ q(z|x) for importance-weighted likelihood bounds (evaluation.likelihood).

        Encodes once, then yields per draw the decoder mean at z, (N, 3, H, W) float32 in [0, 1],
        and log p(z) − log q(z|x) in nats, (N,) (None if not ``with_log_ratio``). The decoder
        likelihood p(x|z) around that mean (a Gaussian of the trained σ, ``decoder_log_scale``,
        discretised onto the 8-bit levels) is evaluation's.
        """
        mu, logvar = (t.float() for t in self.posterior(x))
        log_norm = 0.5 * math.log(2 * math.pi)
        for _ in range(k):
            eps = to_device(torch.randn(mu.shape, generator=generator), mu.device)
            z = mu + eps * torch.exp(0.5 * logvar)
            log_pz = (-0.5 * z.pow(2) - log_norm).sum(1)
            log_qz = (-0.5 * eps.pow(2) - log_norm - 0.5 * logvar).sum(1)
            yield self.decode(z).float(), (log_pz - log_qz) if with_log_ratio else None
