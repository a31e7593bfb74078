"""Sample diversity against real data: a mode-collapse check for adversarial families.

The ratio of the mean pairwise distance between samples to that between real test images is about
1 when samples vary as much as real faces; well below 1 flags mode collapse (or samples that are
blurred or low in contrast), the GAN failure FID alone can hide at small sample counts.
"""
from __future__ import annotations

import torch


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between all distinct pairs of rows of ``x`` (N, D): (N(N-1)/2,), on the CPU."""
    x = x.float().cpu()
    i, j = torch.triu_indices(len(x), len(x), offset=1)
    return torch.cdist(x, x)[i, j]

