"""Active latent dimensions and single-dimension traversals (β-VAE analysis)."""
from __future__ import annotations

import torch


def dimension_activity(codes: torch.Tensor) -> torch.Tensor:
    """Variance across data of each dimension's posterior mean, Var_x E[z_d | x] (Burda et al. 2016).

    A dimension the encoder ignores has mean ~0 for every input, hence ~0 variance; the notebook
    ranked dimensions by this variance on one batch, we use the whole evaluated split.
    """
    return codes.float().var(0)


def active_dimensions(codes: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices of dimensions with activity > threshold, most active first."""
    activity = dimension_activity(codes)
    order = torch.argsort(activity, descending=True)
    return order[activity[order] > threshold]


def traversal_latents(z: torch.Tensor, dims: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(len(dims) * len(values), D): copies of one latent ``z`` (D,) with dim d set to each value.

    Like the notebook we *replace* the value (rather than add), so each row spans the same range.
    """
    out = z.flatten().repeat(len(dims) * len(values), 1)
    rows = torch.arange(len(dims)).repeat_interleave(len(values))
    out[torch.arange(out.shape[0]), dims[rows]] = values.to(out.dtype).repeat(len(dims))
    return out
