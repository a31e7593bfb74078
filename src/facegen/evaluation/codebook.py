"""Codebook usage of a quantised family: how many of its codes the data actually uses.

Perplexity (exp of the entropy of code frequencies, van den Oord et al. 2017 / Razavi et al. 2019)
is the effective number of codes; a codebook whose perplexity is far below its size has collapsed
onto a few codes, and reconstructions then lose detail whatever the decoder.
"""
from __future__ import annotations

import torch

from facegen.data.dataset import FaceSplit
from facegen.models.base import GenerativeModel
from facegen.runtime import Runtime, eval_mode


def split_codes(model: GenerativeModel, split: FaceSplit, rt: Runtime, batch_size: int) -> torch.Tensor:
    """(N, h, w) code indices of a whole split (``model.codes``: the QUANTIZE capability), on the CPU."""
    with eval_mode(model), rt.autocast():
        return torch.cat([model.codes(b.images).cpu()
                          for b in split.batches(batch_size, rt.device, channels_last=rt.channels_last)])


def usage_stats(codes: torch.Tensor, num_codes: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-code counts (num_codes,) of integer ``codes`` (any shape), and ``perplexity``,
    ``codes_used`` (codes that occur at least once) and ``codes_used_frac`` (of ``num_codes``)."""
    counts = torch.bincount(codes.flatten().long(), minlength=num_codes).double()
    p = counts[counts > 0] / counts.sum()
    used = int((counts > 0).sum())
    return counts, {"perplexity": float(torch.exp(-(p * p.log()).sum())), "codes_used": float(used),
                    "codes_used_frac": used / num_codes}
