"""Differentiable augmentation for GAN training (DiffAugment; Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training", NeurIPS).

A discriminator trained on few images memorises them and stops giving G a useful gradient. DiffAugment
applies the *same kind* of random transform to real and generated images every time D sees them, in
D's step and in G's step, and every op is differentiable, so G's gradient flows through the
augmentation: D can no longer tell real from fake by the augmentation, and it never sees the
un-augmented training set it could memorise. The three policies are the paper's, ported from its
reference implementation (mit-han-lab/data-efficient-gans, ``DiffAugment_pytorch.py``) with the same
ranges; images are in tanh's [-1, 1], channels first, as D takes them.

A policy is a subset of ``color``, ``translation``, ``cutout`` (``config.DIFFAUGMENT_POLICIES``, which
validates ``models.dcgan.diffaugment``; the paper's low-data choice is all three); none is the
identity. Randomness comes from ``torch``'s global generator, which the stage seeds, so training
stays reproducible. On the default data and budget it did not pay (docs/defaults.md).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

TRANSLATION_RATIO = 0.125  # shift up to 1/8 of the image side (the paper's value)
CUTOUT_RATIO = 0.5         # a zeroed square of half the image side (the paper's value)


def _per_image(x: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) draws of shape (N, 1, 1, 1), one per image."""
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (_per_image(x) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_per_image(x) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_per_image(x) + 0.5) + mean


def _grid(x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index grids (N, h, w) over batch, rows and columns."""
    return torch.meshgrid(torch.arange(x.shape[0], device=x.device), torch.arange(h, device=x.device),
                          torch.arange(w, device=x.device), indexing="ij")


def translation(x: torch.Tensor) -> torch.Tensor:
    """Shift each image by up to ±1/8 of its side, filling with zeros (mid-grey in [-1, 1])."""
    n, _, h, w = x.shape
    sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dy = torch.randint(-sh, sh + 1, size=(n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, size=(n, 1, 1), device=x.device)
    b, gy, gx = _grid(x, h, w)
    gy = torch.clamp(gy + dy + 1, 0, h + 1)  # +1: indices into the 1-pixel zero padding
    gx = torch.clamp(gx + dx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[b, gy, gx].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor) -> torch.Tensor:
    """Zero one square of half the image side per image, centred anywhere (clipped at the border)."""
    n, _, h, w = x.shape
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), size=(n, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), size=(n, 1, 1), device=x.device)
    b, gy, gx = _grid(x, ch, cw)
    gy = torch.clamp(gy + oy - ch // 2, 0, h - 1)
    gx = torch.clamp(gx + ox - cw // 2, 0, w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[b, gy, gx] = 0
    return x * mask.unsqueeze(1)


POLICIES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], ...]] = {  # keys: config.DIFFAUGMENT_POLICIES
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """``x`` (N, C, H, W) in [-1, 1] with each policy's random transforms applied, differentiably."""
    for name in policy:
        for op in POLICIES[name]:
            x = op(x)
    return x
