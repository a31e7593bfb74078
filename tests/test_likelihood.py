"""Image likelihoods in bits/dim: the discretised Gaussian, σ calibration, IWAE bookkeeping, and the
VAE / VQ-VAE + prior bounds on tiny models (evaluation/likelihood.py)."""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import mpmath
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facegen.config import PriorConfig, TrainConfig, VQVAEConfig
from facegen.evaluation.likelihood import (bits_per_dim, calibrate_sigma, conditional_code_nll_bits_per_dim,
                                           discretized_gaussian_log_likelihood, elbo_nats, iwae_bits_per_dim,
                                           likelihood_metrics)
from facegen.models import build
from facegen.models.pixelcnn import PixelCNNPrior
from tests.conftest import ATTRS, make_split

LEVELS = torch.arange(256, dtype=torch.float64) / 255
OLD_LOG_SIGMA = 0.5 * math.log(0.5)  # the removed fixed decoder, σ² = 1/2


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.one_thread)


def images(split) -> torch.Tensor:
    """uint8 NHWC split -> float NCHW on the k/255 grid."""
    return split.images.permute(0, 3, 1, 2).float() / 255


def nll_bits(x: torch.Tensor, mean: torch.Tensor, log_sigma: float) -> float:
    return float(bits_per_dim(discretized_gaussian_log_likelihood(x, mean, log_sigma), x[0].numel()).mean())


class FixedDecoder(nn.Module):
    """A 'model' whose posterior is a point mass and whose decoder mean is ``fn(x)``: isolates the decoder term."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def importance_samples(self, x, k, generator, with_log_ratio=True):
        return [(self.fn(x), torch.zeros(len(x)) if with_log_ratio else None)]

    def decoder_log_scale(self):
        return None  # trained on nothing: the likelihood fits σ on validation


class GaussianPosterior(nn.Module):
    """q(z|x) = N(m, s²) in ``dims`` dimensions for every image, p(z) = N(0, I), decoder mean = x:
    the rate E_q[log q − log p] is KL = ½ Σ (s² + m² − 1 − log s²), known in closed form."""

    def __init__(self, m: float, s: float, dims: int) -> None:
        super().__init__()
        self.m, self.s, self.dims = m, s, dims

    def kl_nats(self) -> float:
        return 0.5 * self.dims * (self.s ** 2 + self.m ** 2 - 1 - 2 * math.log(self.s))

    def importance_samples(self, x, k, generator, with_log_ratio=True):
        for _ in range(k):
            eps = torch.randn(len(x), self.dims, generator=generator)
            z = self.m + self.s * eps
            log_ratio = (-0.5 * z.pow(2)).sum(1) - (-0.5 * eps.pow(2) - math.log(self.s)).sum(1)
            yield x, log_ratio if with_log_ratio else None

    def decoder_log_scale(self):
        return torch.tensor(math.log(0.01))


def blur(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)


# -- the discretised Gaussian ----------------------------------------------------------------------
@pytest.mark.parametrize("mean", [0.0, 0.3, 0.999, 1.2, -0.1])
@pytest.mark.parametrize("sigma", [1e-4, 1 / 255, 0.1, 5.0, 1e3])
def test_masses_over_the_256_levels_sum_to_one(mean, sigma):
    x = LEVELS.view(256, 1)
    log_p = discretized_gaussian_log_likelihood(x, torch.full_like(x, mean), math.log(sigma))
    assert torch.isfinite(log_p).all() and (log_p <= 0).all()
    assert float(torch.logsumexp(log_p, 0)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("level,mean,sigma", [(128, 0.5, 0.01), (3, 0.9, 0.01), (250, 0.1, 0.02),
                                              (0, 0.6, 0.01), (255, 0.2, 0.01), (40, 0.16, 1e-3)])
def test_bin_mass_matches_high_precision_reference_far_in_the_tails(level, mean, sigma):
    """Up to ~80 standard deviations from the mean, where a plain CDF difference is 0 or 1 - 1."""
    mpmath.mp.dps = 60
    x = level / 255
    a = -mpmath.inf if level == 0 else (mpmath.mpf(x) - mpmath.mpf(0.5) / 255 - mean) / sigma
    b = mpmath.inf if level == 255 else (mpmath.mpf(x) + mpmath.mpf(0.5) / 255 - mean) / sigma
    if a > 0:  # mirror a bin right of the mean, so the reference does not cancel either
        a, b = -b, -a
    expected = float(mpmath.log(mpmath.ncdf(b) - mpmath.ncdf(a)))
    got = float(discretized_gaussian_log_likelihood(torch.tensor([[x]], dtype=torch.float64),
                                                    torch.tensor([[mean]], dtype=torch.float64), math.log(sigma)))
    assert got == pytest.approx(expected, rel=1e-9)


def test_uniform_model_scores_exactly_8_bits_and_nothing_beats_it_on_uniform_data():
    d = 3 * 16 * 16
    uniform = torch.full((5, 7), -d * math.log(256), dtype=torch.float64)  # log p(x) = -D log 256, any k
    eight = torch.full((5,), 8.0, dtype=torch.float64)
    assert torch.allclose(iwae_bits_per_dim(uniform, d), eight, rtol=0, atol=1e-12)
    assert torch.allclose(bits_per_dim(elbo_nats(uniform), d), eight, rtol=0, atol=1e-12)
    # Data spread evenly over the 256 levels: no model beats their entropy (Gibbs), 8 bits/dim.
    x = LEVELS.repeat(4).view(4, 1, 16, 16).float()
    mean = torch.full_like(x, 0.5)
    sigma = calibrate_sigma(x, mean)
    assert 8.0 < nll_bits(x, mean, math.log(sigma)) < 8.3


def test_iwae_is_between_elbo_and_max_weight_and_k1_is_the_elbo():
    log_w = torch.randn(6, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5 - 100
    d = 12
    iwae = iwae_bits_per_dim(log_w, d)
    assert (iwae <= bits_per_dim(elbo_nats(log_w), d)).all()  # Jensen: the IWAE bound is tighter
    assert (iwae >= bits_per_dim(log_w.max(1).values, d)).all()
    assert torch.allclose(iwae_bits_per_dim(log_w[:, :1], d), bits_per_dim(log_w[:, 0], d))


# -- σ calibrated on validation --------------------------------------------------------------------
def test_calibrated_sigma_is_the_ml_scale_and_agrees_with_mse_where_bins_do_not_matter():
    g = torch.Generator().manual_seed(0)
    x = images(make_split(32, seed=1))
    mean = x + 0.05 * torch.randn(x.shape, generator=g)  # errors ≫ one 8-bit level, means inside (0, 1)
    sigma = calibrate_sigma(x, mean)
    assert sigma == pytest.approx(float((x - mean).pow(2).mean().sqrt()), rel=0.02)
    best = nll_bits(x, mean, math.log(sigma))
    assert best < nll_bits(x, mean, math.log(sigma * 1.05)) and best < nll_bits(x, mean, math.log(sigma / 1.05))


def test_oracle_decoder_beats_blurred_decoder_and_calibration_beats_the_old_fixed_sigma():
    val, test = images(make_split(48, seed=1)), images(make_split(48, seed=2))
    gen = torch.Generator().manual_seed(0)
    oracle = likelihood_metrics(FixedDecoder(lambda x: x), val, test, 4, gen, 16)
    blurred = likelihood_metrics(FixedDecoder(blur), val, test, 4, gen, 16)
    assert oracle["iwae_k"] == 1 and oracle["kl_bits_per_dim"] == 0
    assert oracle["nll_bits_per_dim"] < 0.01 and oracle["decoder_sigma"] < 1 / 255  # mass ≈ 1 on every pixel
    assert blurred["nll_bits_per_dim"] > oracle["nll_bits_per_dim"] + 1.0
    assert blurred["nll_bits_per_dim"] < 8.0  # better than uniform...
    fixed = nll_bits(test, blur(test), OLD_LOG_SIGMA)
    assert fixed > 8.0  # ...which the old fixed σ² = 1/2 never was
    assert blurred["nll_bits_per_dim"] < fixed - 3.0
    assert blurred["elbo_nats"] == pytest.approx(-blurred["nll_bits_per_dim"] * test[0].numel() * math.log(2))


def test_rate_is_the_known_kl_in_bits_and_the_trained_sigma_is_scored():
    val, test = images(make_split(8, seed=1)), images(make_split(64, seed=2))
    model = GaussianPosterior(m=0.5, s=0.3, dims=6)
    m = likelihood_metrics(model, val, test, 256, torch.Generator().manual_seed(0), 32)
    assert m["rate_bits"] == pytest.approx(model.kl_nats() / math.log(2), rel=0.02)
    assert m["rate_bits"] == pytest.approx(m["kl_bits_per_dim"] * test[0].numel())
    assert m["decoder_sigma"] == pytest.approx(0.01)  # the model's σ, not one fitted on validation (≈ 0 here)
    oracle = likelihood_metrics(FixedDecoder(lambda x: x), val, test, 4, torch.Generator().manual_seed(0), 32)
    assert oracle["rate_bits"] == 0


# -- VAE: the IWAE bound with the calibrated decoder ------------------------------------------------
def _train(model: nn.Module, x: torch.Tensor, steps: int, opt: torch.optim.Optimizer, g: torch.Generator) -> None:
    model.train()
    for _ in range(steps):
        batch = x[torch.randint(0, len(x), (16,), generator=g)]
        loss = model.losses(SimpleNamespace(images=batch, attrs=None))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_vae_trained_longer_scores_a_lower_nll(tiny_vae_cfg):
    torch.manual_seed(0)
    model = build("vae", tiny_vae_cfg, 16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    train, val, test = images(make_split(256)), images(make_split(48, seed=1)), images(make_split(48, seed=2))
    _train(model, train, 20, opt, g)
    early = copy.deepcopy(model)
    _train(model, train, 300, opt, g)
    m_early = likelihood_metrics(early, val, test, 8, torch.Generator().manual_seed(1), 16)
    m_late = likelihood_metrics(model, val, test, 8, torch.Generator().manual_seed(1), 16)
    assert m_late["nll_bits_per_dim"] < m_early["nll_bits_per_dim"] - 0.2
    assert m_late["decoder_sigma"] < m_early["decoder_sigma"]
    for m in (m_early, m_late):
        assert m["iwae_k"] == 8 and 0 < m["nll_bits_per_dim"] < 8.0
        elbo_bits = m["decoder_nll_bits_per_dim"] + m["kl_bits_per_dim"]
        assert elbo_bits == pytest.approx(-m["elbo_nats"] / (test[0].numel() * math.log(2)))
        assert m["nll_bits_per_dim"] <= elbo_bits and m["kl_bits_per_dim"] > 0


# -- VQ-VAE + PixelCNN prior ------------------------------------------------------------------------
def _prior(rows: torch.Tensor, probs: torch.Tensor, conditional: bool = True) -> PixelCNNPrior:
    torch.manual_seed(0)
    cfg = PriorConfig(hidden=8, layers=2, kernel_size=3, conditional=conditional)
    return PixelCNNPrior(cfg, 16, (4, 4), ATTRS, rows, probs).eval()


def test_marginal_code_nll_bookkeeping():
    codes = torch.randint(0, 16, (5, 4, 4), generator=torch.Generator().manual_seed(0))
    one = torch.tensor([[1.0, 0.0]])
    with torch.no_grad():
        single = _prior(one, torch.ones(1))  # one attribute combination: marginal = conditional
        assert torch.allclose(single.marginal_nll_nats(codes), single.nll_nats(codes, one.expand(5, -1)))
        uncond = _prior(torch.zeros(1, 0), torch.ones(1), conditional=False)
        assert torch.equal(uncond.marginal_nll_nats(codes), uncond.nll_nats(codes, None))
        rows, probs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]), torch.tensor([0.5, 0.3, 0.2])
        mixed = _prior(rows, probs)
        cond = torch.stack([mixed.nll_nats(codes, r.expand(5, -1)) for r in rows], 1)  # (N, 3)
        marginal = mixed.marginal_nll_nats(codes)
        assert torch.allclose(marginal, -torch.logsumexp(probs.log() - cond, 1))
        assert (marginal <= (cond - probs.log()).min(1).values + 1e-5).all()  # P(c) ≥ π_a P(c|a)


def test_vqvae_bound_is_code_nll_plus_decoder_nll():
    cfg = VQVAEConfig(num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, num_embeddings=16,
                      embedding_dim=4, train=TrainConfig(epochs=1, batch_size=16, lr=3e-3))
    torch.manual_seed(0)
    model = build("vqvae", cfg, 16).eval()
    val_split, test_split = make_split(32, seed=1), make_split(32, seed=2)
    rows, probs = PixelCNNPrior.attribute_table(make_split(64).attrs)
    model.attach_prior(_prior(rows, probs))
    val, test = images(val_split), images(test_split)
    m = likelihood_metrics(model, val, test, 8, torch.Generator().manual_seed(0), 16)
    d = test[0].numel()
    assert m["iwae_k"] == 1  # point-mass posterior: one draw is exact
    assert m["nll_bits_per_dim"] == pytest.approx(m["decoder_nll_bits_per_dim"] + m["kl_bits_per_dim"])
    with torch.no_grad():
        code_nll = model.prior.marginal_nll_nats(model.codes(test)).double().mean()
    assert m["kl_bits_per_dim"] == pytest.approx(float(code_nll) / (d * math.log(2)), rel=1e-5)
    cond = conditional_code_nll_bits_per_dim(model, test, test_split.attrs, 16)
    assert 0 < cond < math.log2(16) * 16 / d + 1  # a code map costs about log2(K) bits per position untrained
