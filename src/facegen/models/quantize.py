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

A training step never waits for the host (on CUDA the GPU runs ahead of Python): code counts are an
``index_add_`` of ones rather than ``bincount`` (whose CUDA kernel reads the indices' min/max on the
host), and restarts overwrite the dead codes through a mask instead of listing them with
``nonzero()``. So a fixed number of restart candidates, one per code, is drawn at every step; a
code takes its candidate only while dead.

Under ``torchrun`` the update is the one a single process makes on the global batch: counts and
sums are summed across ranks before the moving averages, and restart candidates are rows of the
global batch drawn on rank 0 (``facegen.distributed.global_rows``), so every rank applies the same
update and the codebook buffers never need averaging.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facegen import distributed

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
            counts = torch.zeros(self.num_embeddings, device=flat.device).index_add_(
                0, idx, torch.ones(idx.shape, device=flat.device))
            if self.training:
                self._update(flat.detach(), idx, counts)  # counts become the global batch's
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
        """EMA codebook step and dead-code restarts (training only), from the global batch:
        ``counts`` (and the per-code sums) are summed across ranks in place first."""
        if self.ema:
            sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat)
            distributed.sum_across_ranks_(counts, sums)
            self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            total = self.ema_count.sum()
            smoothed = (self.ema_count + self.epsilon) / (total + self.num_embeddings * self.epsilon) * total
            self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))
        else:
            distributed.sum_across_ranks_(counts)
        if self.restart_dead:
            self.usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self._restart(flat)

    def _restart(self, flat: torch.Tensor) -> None:
        """Move dead codes onto random encoder outputs of the (global) batch and give them one batch's
        grace. Code k's candidate is the k-th of ``num_embeddings`` random rows; live codes ignore theirs."""
        dead = (self.usage < DEAD_USAGE).unsqueeze(1)
        candidates = distributed.global_rows(flat, self.num_embeddings)
        self.codebook.data.copy_(torch.where(dead, candidates, self.codebook.data))
        self.usage.masked_fill_(dead.squeeze(1), DEAD_USAGE)
        if self.ema:
            self.ema_sum.copy_(torch.where(dead, candidates, self.ema_sum))
            self.ema_count.masked_fill_(dead.squeeze(1), 1.0)
