"""Attribute directions in latent space (the one place that finds them) and latent edits.

* ``mean_difference`` families (encoders): vector(attr) = mean(encode(x) | attr=1) -
  mean(encode(x) | attr=0) over the training split (the notebook's method). The notebook used 50
  batches; we use the whole train split because encoding is cheap and the estimate for rare
  attributes is otherwise noisy. The encodings are never kept: per batch, the per-attribute sums
  of the positive encodings, the sum of all encodings and the counts are accumulated on the device
  in float64, so memory is (attributes x latent size), not (faces x latent size): full CelebA's
  162,770 VQ-VAE encodings alone would be 10.7 GB at 64 px and 43 GB at 128 px.
* ``classifier_boundary`` families (GANs): the unit normal of a linear boundary in z-space
  (InterFaceGAN, Shen et al. 2020; latent/boundaries.py).

Evaluation and the ``facegen edit`` command both call :func:`attribute_directions`.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from tqdm import tqdm

from facegen.data.dataset import FaceSplit
from facegen.errors import FacegenError
from facegen.latent.boundaries import classifier_boundaries
from facegen.models.base import GenerativeModel
from facegen.runtime import Runtime, eval_mode


def encode_split(model: GenerativeModel, split: FaceSplit, batch_size: int, rt: Runtime,
                 limit: int = 0, desc: str | None = None) -> torch.Tensor:
    """Encodings of (the first ``limit`` of) a split, flattened to (N, D), on the CPU; ``desc``
    shows a progress bar (on a terminal) under that name."""
    n = min(limit, len(split)) if limit else len(split)
    codes = []
    with eval_mode(model), rt.autocast(), tqdm(total=n, desc=desc, unit="img", disable=None if desc else True,
                                               leave=False) as bar:
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))
            codes.append(model.encode(split.batch(idx, rt.device, rt.channels_last).images).float().flatten(1).cpu())
            bar.update(len(idx))
    return torch.cat(codes)


def attribute_directions(model: GenerativeModel, names: Sequence[str], train: FaceSplit, batch_size: int,
                         rt: Runtime, *, classifier: Any = None, num_samples: int = 1000,
                         generator: torch.Generator | None = None, desc: str | None = None) -> dict[str, torch.Tensor]:
    """``{attribute: direction (D,)}`` for ``names``, found the way ``model.edit_directions`` says.

    Mean-difference vectors come from ``train`` (whose attribute columns must be ``names``); boundary
    normals from ``num_samples`` prior samples scored by ``classifier`` (drawn with ``generator``).
    An attribute without both positive and negative training faces gets no mean-difference vector.
    Raises FacegenError when a boundary family is given no classifier.
    """
    if model.edit_directions == "classifier_boundary":
        if classifier is None:
            raise FacegenError(f"{model.family} edits along attribute-classifier boundaries: "
                               "run `dvc repro train_classifier` first")
        return classifier_boundaries(model, classifier, tuple(names), num_samples,
                                     generator if generator is not None else torch.Generator().manual_seed(0),
                                     batch_size)
    return mean_difference_vectors(model, train, tuple(names), batch_size, rt, desc)


def mean_difference_vectors(model: GenerativeModel, split: FaceSplit, names: tuple[str, ...], batch_size: int,
                            rt: Runtime, desc: str | None = None) -> dict[str, torch.Tensor]:
    """``{name: mean(encode(x) | attr=1) - mean(encode(x) | attr=0)}`` (D,) float32 on the CPU over ``split``,
    whose first attribute columns are ``names``, for each attribute with both positive and negative faces.

    Streamed: one batch of encodings at a time is reduced into float64 sums on the device, (A, D)
    for the positives and (D,) for all faces, so the negatives' sum is their difference; memory is
    bounded by a batch, and the float64 sums keep the means within float32 rounding of a mean over
    all encodings at once.
    """
    a = len(names)
    pos_sum = pos_count = total = None
    with eval_mode(model), rt.autocast(), tqdm(total=len(split), desc=desc, unit="img", disable=None if desc else True,
                                               leave=False) as bar:
        for batch in split.batches(batch_size, rt.device, channels_last=rt.channels_last):
            codes = model.encode(batch.images).float().flatten(1).double()
            pos = (batch.attrs[:, :a] > 0.5).double()
            if pos_sum is None:
                pos_sum, pos_count, total = codes.new_zeros(a, codes.shape[1]), codes.new_zeros(a), codes.new_zeros(codes.shape[1])
            pos_sum += pos.T @ codes
            pos_count += pos.sum(0)
            total += codes.sum(0)
            bar.update(len(codes))
    if pos_sum is None:
        return {}
    neg_count = len(split) - pos_count
    means = pos_sum / pos_count.clamp_min(1).unsqueeze(1) - (total - pos_sum) / neg_count.clamp_min(1).unsqueeze(1)
    present = ((pos_count > 0) & (neg_count > 0)).tolist()  # one host read, after the last batch
    return {name: means[i].float().cpu() for i, name in enumerate(names) if present[i]}


def edit(z: torch.Tensor, direction: torch.Tensor, scales: tuple[float, ...]) -> torch.Tensor:
    """(len(scales) * N, D): every latent in ``z`` moved by each scale times ``direction`` (scale-major)."""
    d = direction.to(z.device, z.dtype).flatten()
    return torch.cat([z + s * d for s in scales])
