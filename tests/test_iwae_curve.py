"""The IWAE bound against k (evaluation/likelihood.py::iwae_curve) on toy models with a known
likelihood, and the evaluate analysis that writes it (reports/<family>/iwae_curve.json)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from facegen import artifacts
from facegen.config import EvaluateConfig
from facegen.evaluation.analyses import iwae_bound_curve, likelihood
from facegen.evaluation.context import EvalContext
from facegen.evaluation.likelihood import (IWAE_FLAT_TOLERANCE, IwaeCurve, bits_per_dim,
                                           discretized_gaussian_log_likelihood, doubling_ks, iwae_curve)
from facegen.models import build
from tests.conftest import make_split

LOG_SIGMA = math.log(0.05)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.one_thread)


class ConstantDecoder(nn.Module):
    """z ~ q = N(shift, 1) in one dimension, prior p(z) = N(0, 1), and a decoder mean that ignores z.

    x is independent of z, so the posterior is the prior and p(x) = p(x | mean) exactly: with
    ``shift`` = 0 every draw is from the exact posterior and every log-weight is log p(x); with a
    shift, log w = log p(x) + shift²/2 − shift·z, whose k = 1 bound is off by KL(q || p) = shift²/2
    nats and whose k-draw bound falls towards log p(x) as k grows (Burda et al. 2016, Theorem 1)."""

    def __init__(self, mean: torch.Tensor, shift: float) -> None:
        super().__init__()
        self.mean, self.shift = mean, shift

    def importance_samples(self, x, k, generator, with_log_ratio=True):
        for _ in range(k):
            z = self.shift + torch.randn(len(x), generator=generator, dtype=torch.float64)
            yield self.mean.expand_as(x), (-0.5 * z ** 2 + 0.5 * (z - self.shift) ** 2)

    def decoder_log_scale(self):
        return None  # no trained σ: the likelihood row fits one on validation


def faces(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n tiny 8-bit images (N, 3, 2, 2) on the k/255 grid and the constant decoder mean."""
    x = torch.randint(0, 256, (n, 3, 2, 2), generator=torch.Generator().manual_seed(0)).double() / 255
    return x, torch.full((1, 3, 2, 2), 0.5, dtype=torch.float64)


def exact_bits(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return bits_per_dim(discretized_gaussian_log_likelihood(x, mean.expand_as(x), LOG_SIGMA), x[0].numel())


def test_doubling_grid():
    assert doubling_ks(1) == [1]
    assert doubling_ks(1024) == [1 << i for i in range(11)]
    assert doubling_ks(12) == [1, 2, 4, 8, 12]


def test_exact_posterior_draws_give_the_true_likelihood_at_every_k():
    x, mean = faces(4)
    curve = iwae_curve(ConstantDecoder(mean, 0.0), x, 64, torch.Generator().manual_seed(1), 3, LOG_SIGMA)
    assert curve.ks == (1, 2, 4, 8, 16, 32, 64)
    for face, truth in zip(curve.per_face, exact_bits(x, mean)):
        assert face == pytest.approx([float(truth)] * len(curve.ks), rel=1e-12)
    assert curve.gain == pytest.approx(0.0, abs=1e-12)
    assert curve.metrics(64) == {"iwae_curve_gain_bits_per_dim": curve.gain, "iwae_k_flat": 1.0,
                                 "iwae_gap_at_nll_k_bits_per_dim": 0.0}


def test_a_bad_proposal_starts_kl_above_the_likelihood_and_falls_towards_it():
    shift, n, k_max = 1.0, 256, 1024
    x, mean = faces(n)
    curve = iwae_curve(ConstantDecoder(mean, shift), x, k_max, torch.Generator().manual_seed(2), n, LOG_SIGMA,
                       extra_ks=(48, 4096))
    assert curve.ks == (1, 2, 4, 8, 16, 32, 48, 64, 128, 256, 512, 1024)  # extra k beyond k_max dropped
    dims = x[0].numel()
    per_face = torch.tensor(curve.per_face) - exact_bits(x, mean)[:, None]  # bound − truth, (N, len(ks))
    # k = 1: the ELBO, KL(q || p) = shift²/2 nats above the truth (its sd over faces is shift / √n)
    assert float(per_face[:, 0].mean()) * dims * math.log(2) == pytest.approx(shift ** 2 / 2, abs=3 * shift / n ** 0.5)
    # non-increasing in expectation: each step's mean fall is above −3 standard errors of it
    steps = per_face[:, :-1] - per_face[:, 1:]
    assert (steps.mean(0) > -3 * steps.std(0) / n ** 0.5).all()
    # large k: within (e^{shift²} − 1) / (2k) nats of the truth (the delta method's bias), and above it on average
    gap = float(per_face[:, -1].mean()) * dims * math.log(2)
    assert -0.01 < gap < 3 * (math.exp(shift ** 2) - 1) / (2 * k_max) + 0.01
    assert curve.gain > 0.25 / (dims * math.log(2)) and curve.k_flat() > 1


def test_flat_k_is_the_first_k_within_the_tolerance_of_the_largest():
    curve = IwaeCurve((1, 2, 4, 8), ((5.0, 4.5, 4.0 + 2 * IWAE_FLAT_TOLERANCE, 4.0 + IWAE_FLAT_TOLERANCE / 2),
                                     (5.0, 4.5, 4.0, 4.0)))
    assert curve.bits_per_dim[2] == pytest.approx(4.0 + IWAE_FLAT_TOLERANCE)
    assert curve.k_flat() == 4 and curve.k_flat(tolerance=1e-4) == 8
    assert curve.metrics(2)["iwae_gap_at_nll_k_bits_per_dim"] == pytest.approx(0.5 - IWAE_FLAT_TOLERANCE / 4)
    assert "iwae_gap_at_nll_k_bits_per_dim" not in curve.metrics(3)  # not on the grid


def test_analysis_writes_the_curve_with_the_nll_rows_sigma_and_the_baselines(rt, tiny_vae_cfg, tmp_path):
    torch.manual_seed(0)
    test = make_split(8, 16, seed=1)
    cfg = EvaluateConfig(batch_size=4, nll_images=4, nll_importance_samples=4, iwae_curve_images=3, iwae_curve_max_k=16)
    ctx = EvalContext(model=build("vae", tiny_vae_cfg, 16).eval(), family="vae", train=make_split(8, 16), test=test,
                      val=make_split(8, 16, seed=2), cfg=cfg, rt=rt, seed=0, out_dir=tmp_path)
    metrics = iwae_bound_curve(ctx)
    saved = json.loads((tmp_path / artifacts.IWAE_CURVE).read_text())
    assert (tmp_path / artifacts.IWAE_CURVE_FIGURE).is_file()
    assert saved["k"] == [1, 2, 4, 8, 16] and saved["faces"] == 3 and len(saved["per_face_bits_per_dim"]) == 3
    assert saved["decoder_sigma"] == likelihood(ctx)["decoder_sigma"]  # the NLL row's decoder
    assert saved["flat_tolerance_bits_per_dim"] == IWAE_FLAT_TOLERANCE
    assert saved["baselines_bits_per_dim"]["uniform"] == 8.0
    assert 0 < saved["baselines_bits_per_dim"]["codec_webp_bits_per_dim"] < 8
    assert set(metrics) == {"iwae_curve_gain_bits_per_dim", "iwae_k_flat", "iwae_gap_at_nll_k_bits_per_dim"}
    assert all(saved[k] == v for k, v in metrics.items()) and metrics["iwae_k_flat"] in saved["k"]
    assert all(0 < b < 16 for b in saved["bits_per_dim"])


class PointMass(nn.Module):
    """q(z|x) a point mass: one draw whatever k, as the VQ-VAE's codes."""

    def importance_samples(self, x, k, generator, with_log_ratio=True):
        return [(torch.full_like(x, 0.5), torch.zeros(len(x)) if with_log_ratio else None)]

    def decoder_log_scale(self):
        return None  # no trained σ: the likelihood row fits one on validation


def test_a_point_mass_posterior_gets_no_curve_and_a_note(rt, tmp_path):
    split = make_split(4, 8)
    ctx = EvalContext(model=PointMass(), family="toy", train=split, test=split, val=split,
                      cfg=EvaluateConfig(nll_images=4), rt=rt, seed=0, out_dir=tmp_path)
    assert iwae_bound_curve(ctx) == {}
    assert not (tmp_path / artifacts.IWAE_CURVE).exists()
    assert any("posterior is a point mass" in note for note in ctx.notes)
