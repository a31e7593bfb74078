"""Vector quantiser: the discrete bottleneck of the VQ-VAE.

Reference is the notebook's ``VectorQuantizer`` (nearest codebook vector by squared distance,
codebook loss ``||sg[z_e] - e||²`` + β·commitment ``||z_e - sg[e]||²``, straight-through gradient
``z_e + sg[e - z_e]``), plus two options that fight codebook collapse, which is what limits a small
VQ-VAE trained for a few epochs:

* ``ema``: codebook vectors follow an exponential moving average of the encoder outputs assigned
  to them (van den Oord et al. 2017, appendix; Razavi et al. 2019) instead of a gradient on the
  codebook loss. Counts are Laplace-smoothed by ``epsilon`` so an unused code never divides by 0.
* ``restart_dead``: a code whose moving-average usage falls below one hit per batch is moved onto
  a random encoder output of the current batch (Dhariwal et al. 2020, Jukebox). Usage starts at 0,
  so the first training step places every code on real encoder outputs: a data-dependent init that
  makes the notebook's tiny uniform init irrelevant.

Distances and updates are computed in float32 even under autocast: argmin over 512 codes in bf16
picks visibly wrong codes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

DEAD_USAGE = 1.0  # moving-average hits per batch below which a code counts as dead


@dataclass
class Quantized:
    """What one quantiser call returns. Loss terms are scalars; statistics are detached."""

    quantized: torch.Tensor   # (N, D, H, W) straight-through: forward = codes, backward = identity
    indices: torch.Tensor     # (N, H, W) int64
    loss: torch.Tensor        # codebook (0 with EMA) + β · commitment
    commitment: torch.Tensor  # ||z_e - sg[e]||² (mean)
    perplexity: torch.Tensor  # exp(entropy of the batch's code histogram)
    used_frac: torch.Tensor   # fraction of codes chosen at least once in the batch


class VectorQuantizer(nn.Module):
    def __init__(self, num_embeddings: int, embedding_dim: int, commitment_cost: float, *, ema: bool,
                 decay: float, epsilon: float, restart_dead: bool) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.commitment_cost = commitment_cost
        self.ema = ema
        self.decay = decay
        self.epsilon = epsilon
        self.restart_dead = restart_dead
        init = torch.empty(num_embeddings, embedding_dim).uniform_(-1 / num_embeddings, 1 / num_embeddings)
        if ema:
            # Updated in place by the moving averages, never by the optimiser.
            self.register_buffer("codebook", init)
            self.register_buffer("ema_count", torch.ones(num_embeddings))
            self.register_buffer("ema_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        if restart_dead:
            self.register_buffer("usage", torch.zeros(num_embeddings))

    # -- lookup ---------------------------------------------------------------------------------
    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of ``flat`` (M, D), by squared Euclidean distance."""
        book = self.codebook.float()
        dist = book.pow(2).sum(1) - 2 * flat.float() @ book.t()  # ||x||² is constant per row
        return dist.argmin(1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors for an (N, H, W) index map, as (N, D, H, W)."""
        return F.embedding(indices, self.codebook).permute(0, 3, 1, 2)

    def indices(self, z_e: torch.Tensor) -> torch.Tensor:
        """(N, D, H, W) continuous encodings -> (N, H, W) code indices."""
        n, d, h, w = z_e.shape
        return self.nearest(z_e.permute(0, 2, 3, 1).reshape(-1, d)).view(n, h, w)

    # -- forward --------------------------------------------------------------------------------
    def forward(self, z_e: torch.Tensor) -> Quantized:
        with torch.autocast(z_e.device.type, enabled=False):
            z = z_e.float()
            n, d, h, w = z.shape
            flat = z.permute(0, 2, 3, 1).reshape(-1, d)
            idx = self.nearest(flat)
            counts = torch.bincount(idx, minlength=self.num_embeddings).float()
            if self.training:
                self._update(flat.detach(), idx, counts)
            q = F.embedding(idx, self.codebook).view(n, h, w, d).permute(0, 3, 1, 2)
            commitment = F.mse_loss(z, q.detach())
            loss = self.commitment_cost * commitment
            if not self.ema:
                loss = loss + F.mse_loss(q, z.detach())
            probs = counts / counts.sum()
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
            quantized = z + (q - z).detach()
        return Quantized(quantized=quantized.to(z_e.dtype), indices=idx.view(n, h, w), loss=loss,
                         commitment=commitment.detach(), perplexity=perplexity,
                         used_frac=(counts > 0).float().mean())

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> None:
        """EMA codebook step and dead-code restarts (training only; single process)."""
        if self.ema:
            sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat)
            self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            total = self.ema_count.sum()
            smoothed = (self.ema_count + self.epsilon) / (total + self.num_embeddings * self.epsilon) * total
            self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))
        if self.restart_dead:
            self.usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            dead = (self.usage < DEAD_USAGE).nonzero().squeeze(1)
            if len(dead):
                self._restart(dead, flat)

    def _restart(self, dead: torch.Tensor, flat: torch.Tensor) -> None:
        """Move dead codes onto random encoder outputs and give them one batch's grace."""
        pick = torch.randint(0, flat.shape[0], (len(dead),), device=flat.device)
        self.codebook.data[dead] = flat[pick]
        self.usage[dead] = DEAD_USAGE
        if self.ema:
            self.ema_sum[dead] = flat[pick]
            self.ema_count[dead] = 1.0
