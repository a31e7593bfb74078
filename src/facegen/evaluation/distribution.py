"""Distances between the distributions of real and generated images, on feature vectors.

Feature spaces: the standard Inception-v3 pool features (``evaluation/inception.py``:
``fid_inception`` / ``kid_inception``, comparable with published numbers at equal sample counts) and
the attribute classifier's (``fid_facegen`` / ``kid_facegen``: same formulas, a private feature
space, the cheap second view). KID comes from torchmetrics (fed precomputed features through an
identity "extractor"); FID is the Fréchet distance of Heusel et al. 2017 computed in a form that is
exact and fast for 2048-d features (see :func:`frechet_distance`); precision / recall / density /
coverage (Naeem et al. 2020, k-NN balls in feature space) are a few lines of ``torch.cdist``
because no maintained library ships them.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn
from torchmetrics.image.kid import KernelInceptionDistance


class _Precomputed(nn.Identity):
    """A torchmetrics "feature extractor" for features that were already computed."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID formula on (N, F) feature sets: ||mu_r - mu_f||² + tr S_r + tr S_f - 2 tr sqrt(S_r S_f),
    with unbiased (N-1) covariances, in float64 (Heusel et al. 2017; as pytorch-fid / torchmetrics).

    tr sqrt(S_r S_f) is the sum of singular values of A_r A_fᵀ / sqrt((N_r-1)(N_f-1)) for the
    centred feature matrices A (the nonzero eigenvalues of S_r S_f are its squared singular
    values): an (N_r, N_f) SVD instead of a non-symmetric (F, F) matrix square root, exact and
    seconds instead of minutes for 2048-d Inception features. Used while either set is smaller than
    F; otherwise the symmetric form tr sqrt(S_r^½ S_f S_r^½) by eigendecompositions.
    """
    real, fake = real.double(), fake.double()
    a_r, a_f = real - real.mean(0), fake - fake.mean(0)
    c_r, c_f = len(real) - 1, len(fake) - 1
    mean_term = float(((real.mean(0) - fake.mean(0)) ** 2).sum())
    traces = float((a_r ** 2).sum() / c_r + (a_f ** 2).sum() / c_f)
    if min(len(real), len(fake)) <= real.shape[1]:
        cross = torch.linalg.svdvals(a_r @ a_f.T).sum() / (c_r * c_f) ** 0.5
    else:
        vals, vecs = torch.linalg.eigh(a_r.T @ a_r / c_r)
        root = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
        cross = torch.linalg.eigvalsh(root @ (a_f.T @ a_f / c_f) @ root).clamp_min(0).sqrt().sum()
    return mean_term + traces - 2 * float(cross)


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
