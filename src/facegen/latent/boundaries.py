"""Attribute directions for a GAN: linear boundaries in z-space (InterFaceGAN, Shen et al. 2020).

A GAN has no encoder, so the VAE recipe (mean difference of encoded faces with/without an
attribute) does not apply. Instead: draw z from the prior, decode, let the pipeline's attribute
classifier score each image, and fit a linear classifier on z that separates the highest-scoring
samples from the lowest-scoring ones. Its unit normal is the edit direction: moving z along it
raises the attribute's score, and moving by a fixed step means the same amount for every attribute.

Positives/negatives are the top and bottom ``fraction`` of samples by score (as InterFaceGAN), not
a 0.5 threshold: an attribute the generator rarely produces still gets a balanced, meaningful
split, and the ambiguous middle does not blur the boundary.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import torch
from sklearn.svm import LinearSVC

from facegen.errors import CheckpointError
from facegen.models.base import GenerativeModel
from facegen.runtime import eval_mode


class AttributeScorer(Protocol):
    """What boundaries need from the attribute classifier (models/classifier.py)."""

    attributes: tuple[str, ...]

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor: ...


def labelled_prior_samples(model: GenerativeModel, classifier: AttributeScorer, n: int,
                           generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` prior latents (n, D) and the classifier's probabilities for their decodings (n, A), on the CPU."""
    z = model.latent_prior(n, generator).flatten(1)
    with eval_mode(model):
        probs = torch.cat([classifier.predict_proba(model.decode(chunk).float()) for chunk in z.split(batch_size)])
    return z.float().cpu(), probs.float().cpu()


def fit_boundary(z: torch.Tensor, scores: torch.Tensor, fraction: float = 0.3) -> torch.Tensor:
    """Unit normal (D,) of a linear SVM separating the top from the bottom ``fraction`` of ``scores``.

    Oriented so that moving along it increases the score.
    """
    k = max(1, int(len(scores) * fraction))
    order = torch.argsort(scores)
    idx = torch.cat([order[:k], order[-k:]])
    labels = torch.cat([torch.zeros(k), torch.ones(k)])
    svm = LinearSVC(C=1.0, dual="auto").fit(z[idx].numpy(), labels.numpy())
    normal = torch.from_numpy(svm.coef_[0]).float()
    return normal / normal.norm().clamp_min(1e-12)


def classifier_boundaries(model: GenerativeModel, classifier: AttributeScorer, names: Sequence[str], n: int,
                          generator: torch.Generator, batch_size: int,
                          fraction: float = 0.3) -> dict[str, torch.Tensor]:
    """``{attribute: unit normal (D,)}`` on the model's device, one per name in ``names``."""
    missing = [a for a in names if a not in classifier.attributes]
    if missing:
        raise CheckpointError(f"the attribute classifier was trained without {missing}: "
                              "rerun `dvc repro train_classifier` after changing data.attributes")
    z, probs = labelled_prior_samples(model, classifier, n, generator, batch_size)
    device = next(model.parameters()).device
    return {a: fit_boundary(z, probs[:, classifier.attributes.index(a)], fraction).to(device) for a in names}
