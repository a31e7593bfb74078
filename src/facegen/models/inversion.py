"""GAN inversion by latent optimisation: find z such that G(z) reproduces a target image.

A GAN has no encoder, so to put it into the reconstruction comparison we project each target into
z-space by gradient descent on the pixel MSE, starting from several random z (restarts) because the
objective is non-convex, and keep the restart that ends lowest. The step budget is fixed so the
cost is predictable and every image gets the same effort.

All restarts of all images are optimised as one batch. Each image's loss depends only on its own
z (the generator must be in eval mode: BatchNorm with running statistics, no batch coupling) and
Adam's update is element-wise, so summing the per-image losses optimises every z exactly as if it
were done alone, at batch speed.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

Progress = Callable[[int, int], None]  # (steps done, steps in all)
# Who wants to hear about inversion steps in this thread (or task): set by `inversion_progress`, so
# a caller that inverts through the family interface (``model.encode``) can show progress without
# the interface growing a parameter. A ContextVar keeps concurrent callers (server threads) apart.
_PROGRESS: ContextVar[Progress | None] = ContextVar("inversion_progress", default=None)


@contextmanager
def inversion_progress(report: Progress) -> Iterator[None]:
    """Call ``report(done, total)`` after every optimisation step of :func:`invert` run in this context."""
    token = _PROGRESS.set(report)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


@dataclass
class InversionResult:
    z: torch.Tensor           # (N, D): the best latent found for each target
    loss_trace: torch.Tensor  # (N, steps): per-image MSE of the chosen restart at every step
    loss: torch.Tensor        # (N,): final MSE of the chosen restart


def invert(generator: Callable[[torch.Tensor], torch.Tensor], targets: torch.Tensor, z_dim: int, *,
           steps: int, restarts: int, lr: float, rng: torch.Generator) -> InversionResult:
    """Optimise ``restarts`` random z per target for ``steps`` Adam steps on pixel MSE.

    ``generator`` maps (B, z_dim) to images in the targets' range; it must be deterministic per
    sample (eval-mode BatchNorm). ``rng`` draws the restart starting points (CPU generator, so the
    result does not depend on the device). Works under an outer ``inference_mode``.
    """
    if steps < 1 or restarts < 1:
        raise ValueError(f"inversion needs steps >= 1 and restarts >= 1, got {steps}, {restarts}")
    n = targets.shape[0]
    with torch.inference_mode(False), torch.enable_grad():
        # clone(): a tensor made under inference_mode cannot be saved for backward.
        target = targets.detach().clone().repeat(restarts, *([1] * (targets.dim() - 1)))
        z = torch.randn(restarts * n, z_dim, generator=rng).to(targets.device).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        trace = torch.empty(steps, restarts * n, device=targets.device)
        report = _PROGRESS.get()
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            per_image = (generator(z).float() - target).pow(2).flatten(1).mean(1)
            per_image.sum().backward()
            opt.step()
            trace[step] = per_image.detach()
            if report is not None:
                report(step + 1, steps)
        with torch.no_grad():
            final = (generator(z).float() - target).pow(2).flatten(1).mean(1)
    # Row r * n + i is restart r of image i.
    best = final.view(restarts, n).argmin(0)
    rows = best * n + torch.arange(n, device=best.device)
    return InversionResult(z=z.detach()[rows], loss_trace=trace[:, rows].T.contiguous(), loss=final[rows])
