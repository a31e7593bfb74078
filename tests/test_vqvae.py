"""Vector quantiser and the VQ-VAE family, on tiny models and data."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from facegen.config import TrainConfig, VQVAEConfig
from facegen.errors import FacegenError
from facegen.models import build
from facegen.models.quantize import DEAD_USAGE, VectorQuantizer
from facegen.runtime import seed_everything
from facegen.models.checkpoint import load_model, save_model
from facegen.training.loop import evaluate_losses, fit
from tests.conftest import make_split


def quantizer(ema: bool = False, restart: bool = False, k: int = 4, d: int = 2) -> VectorQuantizer:
    vq = VectorQuantizer(k, d, 0.25, ema=ema, decay=0.9, epsilon=1e-5, restart_dead=restart)
    book = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])[:k, :d]
    vq.codebook.data.copy_(book)
    if ema:
        vq.ema_sum.copy_(book)
    return vq


def as_map(vectors: list[list[float]]) -> torch.Tensor:
    """A list of D-vectors as a (1, D, 1, len) encoder map."""
    return torch.tensor(vectors).t().reshape(1, -1, 1, len(vectors))


@pytest.fixture
def tiny_cfg() -> VQVAEConfig:
    return VQVAEConfig(num_hiddens=16, num_residual_hiddens=8, num_residual_layers=1, num_embeddings=16,
                       embedding_dim=4, train=TrainConfig(epochs=8, batch_size=16, lr=3e-3))


def test_picks_the_nearest_code():
    vq = quantizer().eval()
    out = vq(as_map([[0.9, 0.2], [0.1, -0.1], [0.2, 0.7], [4.0, 6.0]]))
    assert out.indices.flatten().tolist() == [1, 0, 2, 3]
    assert torch.equal(out.quantized[0, :, 0].t(), vq.codebook[[1, 0, 2, 3]])
    assert out.perplexity == pytest.approx(4.0) and out.used_frac == 1.0


def test_straight_through_gradient_and_codebook_loss():
    vq = quantizer().train()
    z = as_map([[0.9, 0.2], [0.2, 0.7]]).requires_grad_()
    out = vq(z)
    weights = torch.randn_like(out.quantized)
    (out.quantized * weights).sum().backward()
    assert torch.equal(z.grad, weights)  # identity gradient through the quantiser
    vq.codebook.grad = None
    vq(z).loss.backward()
    assert vq.codebook.grad[[1, 2]].abs().sum() > 0 and vq.codebook.grad[[0, 3]].abs().sum() == 0


def test_ema_update_moves_used_codes_towards_encoder_outputs():
    vq = quantizer(ema=True).train()
    assert not any(p is vq.codebook for p in vq.parameters())  # the optimiser never touches it
    before = vq.codebook.clone()
    out = vq(as_map([[0.8, 0.0], [0.8, 0.0]]))
    assert out.indices.flatten().tolist() == [1, 1]
    assert 0.8 < vq.codebook[1, 0] < before[1, 0]
    assert torch.allclose(vq.codebook[[0, 2, 3]], before[[0, 2, 3]], atol=1e-4)
    vq.eval()
    frozen = vq.codebook.clone()
    vq(as_map([[0.8, 0.0]]))
    assert torch.equal(vq.codebook, frozen)  # no updates outside training


@pytest.mark.parametrize("ema", [False, True])
def test_dead_codes_restart_onto_encoder_outputs(ema):
    vq = quantizer(ema=ema, restart=True).train()
    z = as_map([[0.1, 0.0], [0.9, 0.1], [0.0, 1.1], [0.5, 0.5]])
    vq(z)  # usage starts at 0: every code is placed on an encoder output
    inputs = z[0, :, 0].t()
    for code in vq.codebook:
        assert (code - inputs).abs().sum(1).min() < 1e-6
    vq.usage.fill_(10 * DEAD_USAGE)
    vq.usage[3] = 0.0  # code 3 alone has gone unused
    keep = vq.codebook[:3].clone()
    vq.codebook.data[3] = torch.tensor([50.0, 50.0])
    vq(as_map([[0.0, 0.0], [1.0, 0.0]]))
    assert vq.codebook[3].tolist() in ([0.0, 0.0], [1.0, 0.0])
    assert vq.usage[3] == DEAD_USAGE
    if not ema:
        assert torch.equal(vq.codebook[:3], keep)


def test_shapes_latent_space_and_metrics(tiny_cfg):
    model = build("vqvae", tiny_cfg, 16).eval()
    x = torch.rand(3, 3, 16, 16)
    z = model.encode(x)
    assert z.shape == (3, 4, 4, 4) and z.dtype == torch.float32  # continuous z_e
    codes = model.codes(x)
    assert codes.shape == (3, 4, 4) and codes.dtype == torch.long
    assert torch.equal(model.decode(z), model.decode_codes(codes))
    out = model.val_step(type("B", (), {"images": x})())
    assert {"loss", "recon_mse", "commitment", "perplexity", "codes_used_frac"} <= set(out)


def test_sample_without_prior_is_a_clear_error(tiny_cfg):
    with pytest.raises(FacegenError, match="fit_prior"):
        build("vqvae", tiny_cfg, 16).sample(2, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("ema,restart", [(False, False), (True, True)])
def test_fit_decreases_reconstruction_error(tiny_cfg, rt, ema, restart):
    cfg = dataclasses.replace(tiny_cfg, ema=ema, restart_dead_codes=restart)
    generator = seed_everything(0)
    model = rt.prepare(build("vqvae", cfg, 16))
    val = make_split(32, seed=1)
    before = evaluate_losses(model, val, 32, rt)
    result = fit(model, make_split(128), val, cfg.train, rt, generator)
    after = result.history[-1]
    assert after["val/recon_mse"] < 0.6 * before["val/recon_mse"]
    assert after["val/perplexity"] > 1.0 and {"train/commitment", "train/codes_used_frac"} <= set(after)


def test_checkpoint_round_trip(tiny_cfg, rt, tmp_path):
    model = rt.prepare(build("vqvae", dataclasses.replace(tiny_cfg, ema=True), 16))
    fit(model, make_split(32), None, dataclasses.replace(tiny_cfg.train, epochs=1), rt, seed_everything(0))
    model.eval()
    save_model(model, tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(loaded.codes(x), model.codes(x))
    assert torch.allclose(loaded.reconstruct(x), model.reconstruct(x))
