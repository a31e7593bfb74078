"""VAE and β-VAE: one class, β only weights the KL term.

Reference architecture is the notebook's: a stack of stride-2 4x4 convs (BatchNorm, LeakyReLU 0.2)
down to a small spatial map, linear heads for μ and log σ², and the mirrored transposed-conv
decoder ending in a sigmoid. Widths and latent size come from params so the default pipeline can
use a narrower network than the notebook's (32-64-128-256, z=128) and still fit the CPU budget.

Loss, as in the notebook: summed pixel MSE + β·KL(q(z|x) || N(0, I)). We divide by the batch size
(per-image values) so logged numbers do not depend on the batch size; Adam is scale invariant, so
this does not change the optimisation relative to the notebook's batch sum.
"""
from __future__ import annotations

import math
from typing import ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn

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
        recon = self.decode(z).float()
        n = x.shape[0]
        rec = F.mse_loss(recon, x.float(), reduction="sum") / n
        kl = kl_per_dim(mu.float(), logvar.float()).sum() / n
        return {"loss": rec + self.cfg.beta * kl, "recon": rec, "kl": kl, "elbo": -(rec + kl)}

    # -- likelihood -----------------------------------------------------------------------------
    def importance_samples(self, x: torch.Tensor, k: int, generator: torch.Generator,
                           with_log_ratio: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """k draws z ~ q(z|x) for importance-weighted likelihood bounds (evaluation.likelihood).

        Encodes once, then yields per draw the decoder mean at z, (N, 3, H, W) float32 in [0, 1],
        and log p(z) − log q(z|x) in nats, (N,) (None if not ``with_log_ratio``). The decoder
        likelihood p(x|z) around that mean (a discretised Gaussian whose σ is fitted on validation)
        is evaluation's, not the model's.
        """
        mu, logvar = (t.float() for t in self.posterior(x))
        log_norm = 0.5 * math.log(2 * math.pi)
        for _ in range(k):
            eps = to_device(torch.randn(mu.shape, generator=generator), mu.device)
            z = mu + eps * torch.exp(0.5 * logvar)
            log_pz = (-0.5 * z.pow(2) - log_norm).sum(1)
            log_qz = (-0.5 * eps.pow(2) - log_norm - 0.5 * logvar).sum(1)
            yield self.decode(z).float(), (log_pz - log_qz) if with_log_ratio else None
