"""Attribute directions in latent space (the one place that finds them) and latent edits.

* ``mean_difference`` families (encoders): vector(attr) = mean(encode(x) | attr=1) -
  mean(encode(x) | attr=0) over the training split (the notebook's method). The notebook used 50
  batches; we use the whole train split because encoding is cheap and the estimate for rare
  attributes is otherwise noisy.
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
    codes = encode_split(model, train, batch_size, rt, desc=desc)
    return mean_difference_vectors(codes, train.attrs, tuple(names))


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
