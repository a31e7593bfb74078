"""Paths between two latents.

Linear interpolation is the notebook's; spherical (slerp) keeps the norm of Gaussian latents near
the typical-set shell, so midpoints do not fall into the low-density centre of N(0, I).
"""
from __future__ import annotations

import torch


def lerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """(steps, *a.shape) points from a to b inclusive."""
    t = torch.linspace(0, 1, steps, device=a.device).view(-1, *([1] * a.dim()))
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Spherical interpolation on flattened latents; falls back to lerp for (anti)parallel vectors."""
    fa, fb = a.flatten().float(), b.flatten().float()
    cos = torch.dot(fa, fb) / (fa.norm() * fb.norm()).clamp_min(1e-8)
    omega = torch.arccos(cos.clamp(-1, 1))
    if omega.abs() < 1e-4 or (torch.pi - omega).abs() < 1e-4:
        return lerp(a, b, steps)
    t = torch.linspace(0, 1, steps, device=a.device).view(-1, 1)
    out = (torch.sin((1 - t) * omega) * fa + torch.sin(t * omega) * fb) / torch.sin(omega)
    return out.view(steps, *a.shape).to(a.dtype)
