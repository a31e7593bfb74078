"""Distances between the distributions of real and generated images, on feature vectors.

The features are the attribute classifier's (``AttributeClassifier.features``), so the metrics
are named ``fid_facegen`` / ``kid_facegen``: same formulas as FID / KID, different feature space,
not comparable with published Inception numbers. FID and KID come from torchmetrics (fed the
precomputed features through an identity "extractor"); precision / recall / density / coverage
(Naeem et al. 2020, k-NN balls in feature space) are a few lines of ``torch.cdist`` because no
maintained library ships them.

The standard Inception FID runs only on request: it needs the user's local copy of the
``pt_inception-2015-12-05`` weights and the torch-fidelity package (torchmetrics builds its
Inception network from it). Nothing is ever downloaded.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE


class _Precomputed(nn.Identity):
    """A torchmetrics "feature extractor" for features that were already computed."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID formula on (N, F) feature sets (float64 statistics, torchmetrics)."""
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, subsets: int, subset_size: int,
                    seed: int) -> tuple[float, float]:
    """KID (cubic-kernel MMD², unbiased) mean and std over random subsets; seeded locally."""
    size = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():  # "will save all extracted features": yes, a few thousand vectors
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):  # torchmetrics draws subsets from the global RNG
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def _kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest *other* point of the same set."""
    return torch.cdist(x, x).kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


def precision_recall_density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict[str, float]:
    """k-NN manifold metrics (Naeem et al. 2020), all in [0, 1] except density (≈1 when matched).

    precision: fake points inside some real k-NN ball; recall: real points inside some fake ball;
    density: mean number of real balls containing a fake point, / k; coverage: real balls that
    contain at least one fake point.
    """
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall need more than k={k} points per set, got {len(real)} and {len(fake)}")
    real, fake = real.double(), fake.double()
    r_real = _kth_neighbour_radius(real, k)
    r_fake = _kth_neighbour_radius(fake, k)
    dist = torch.cdist(real, fake)  # (N_real, N_fake)
    in_real_ball = dist < r_real[:, None]
    return {
        "precision": float(in_real_ball.any(0).double().mean()),
        "recall": float((dist < r_fake[None, :]).any(1).double().mean()),
        "density": float(in_real_ball.double().sum(0).mean() / k),
        "coverage": float(in_real_ball.any(1).double().mean()),
    }


def inception_unavailable(weights: str) -> str | None:
    """Why the standard Inception FID cannot run (None when it can)."""
    if not weights:
        return "Inception FID skipped: set evaluate.inception_weights to a local pt_inception-2015-12-05 weights file."
    if not Path(weights).is_file():
        return f"Inception FID skipped: evaluate.inception_weights = {weights!r} is not a file."
    if not _TORCH_FIDELITY_AVAILABLE:
        return "Inception FID skipped: it needs the torch-fidelity package (pip install torch-fidelity)."
    return None


def inception_fid(real: torch.Tensor, fake: torch.Tensor, weights: str, batch_size: int) -> float:
    """Standard FID (Inception-v3 pool features, 299 px) of image batches in [0, 1], local weights only.

    torch-fidelity unpickles the weights file (``torch.load(weights_only=False)``): point the param
    only at a file you trust.
    """
    metric = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=weights)
    metric = metric.to(real.device)
    for images, is_real in ((real, True), (fake, False)):
        for chunk in images.split(batch_size):
            metric.update(chunk.float().clamp(0, 1), real=is_real)
    return float(metric.compute())
