"""Attribute vectors by mean difference (the notebook's method) and latent edits.

vector(attr) = mean(encode(x) | attr=1) - mean(encode(x) | attr=0) over the training split. The
notebook used 50 batches; we use the whole train split because encoding is cheap and the estimate
for rare attributes is otherwise noisy.
"""
from __future__ import annotations

import torch

from facegen.data.dataset import FaceSplit
from facegen.models.base import GenerativeModel
from facegen.runtime import Runtime, eval_mode


def encode_split(model: GenerativeModel, split: FaceSplit, batch_size: int, rt: Runtime,
                 limit: int = 0) -> torch.Tensor:
    """Encodings of (the first ``limit`` of) a split, flattened to (N, D), on the CPU."""
    n = min(limit, len(split)) if limit else len(split)
    codes = []
    with eval_mode(model), rt.autocast():
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))
            codes.append(model.encode(split.batch(idx, rt.device, rt.channels_last).images).float().flatten(1).cpu())
    return torch.cat(codes)


def mean_difference_vectors(codes: torch.Tensor, attrs: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """One vector per attribute that has both positive and negative examples."""
    vectors = {}
    for i, name in enumerate(names):
        pos, neg = attrs[:, i] > 0.5, attrs[:, i] <= 0.5
        if pos.any() and neg.any():
            vectors[name] = codes[pos].mean(0) - codes[neg].mean(0)
    return vectors


def edit(z: torch.Tensor, direction: torch.Tensor, scales: tuple[float, ...]) -> torch.Tensor:
    """(len(scales) * N, D): every latent in ``z`` moved by each scale times ``direction`` (scale-major)."""
    d = direction.to(z.device, z.dtype).flatten()
    return torch.cat([z + s * d for s in scales])
