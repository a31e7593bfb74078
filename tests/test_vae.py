"""VAE / β-VAE and the shared training loop, on tiny models and data."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from facegen.models import build
from facegen.models.vae import DecoderScale
from facegen.data.dataset import Batch
from facegen.runtime import seed_everything
from facegen.models.checkpoint import load_model, save_model
from facegen.training.loop import fit
from tests.conftest import make_split


def test_shapes(tiny_vae_cfg):
    model = build("vae", tiny_vae_cfg, 16)
    x = torch.rand(5, 3, 16, 16)
    assert model.encode(x).shape == (5, 4)
    assert model.decode(torch.zeros(5, 4)).shape == (5, 3, 16, 16)
    s = model.sample(3, torch.Generator().manual_seed(0))
    assert s.shape == (3, 3, 16, 16) and 0 <= s.min() and s.max() <= 1


def test_too_many_layers_for_image_size(tiny_vae_cfg):
    with pytest.raises(ValueError, match="too many"):
        build("vae", dataclasses.replace(tiny_vae_cfg, widths=(4, 4, 4, 4, 4)), 16)


def test_beta_weights_only_the_kl(tiny_vae_cfg):
    torch.manual_seed(0)
    model = build("vae", tiny_vae_cfg, 16)
    x = Batch(torch.rand(4, 3, 16, 16), torch.zeros(4, 0))
    torch.manual_seed(1)
    a = model.losses(x)
    model.cfg = dataclasses.replace(tiny_vae_cfg, beta=4.0)
    torch.manual_seed(1)
    b = model.losses(x)
    assert torch.allclose(b["loss"], a["recon"] + 4.0 * a["kl"])


def test_fit_decreases_loss_and_writes_csv(tiny_vae_cfg, split, rt, tmp_path):
    cfg = dataclasses.replace(tiny_vae_cfg, train=dataclasses.replace(tiny_vae_cfg.train, epochs=4))
    model = rt.prepare(build("vae", cfg, 16))
    result = fit(model, split, make_split(32, seed=1), cfg.train, rt, seed_everything(0),
                 csv_path=tmp_path / "log.csv")
    losses = [row["train/loss"] for row in result.history]
    assert losses[-1] < losses[0]
    assert "val/elbo" in result.history[-1]
    assert (tmp_path / "log.csv").read_text().splitlines()[0].startswith("epoch,")


def _train(cfg, split, rt, state_path=None):
    generator = seed_everything(7)
    model = rt.prepare(build("vae", cfg, 16))
    result = fit(model, split, None, cfg.train, rt, generator, state_path=state_path)
    return model, result


def test_same_params_same_metrics(tiny_vae_cfg, split, rt):
    _, a = _train(tiny_vae_cfg, split, rt)
    _, b = _train(tiny_vae_cfg, split, rt)
    strip = lambda h: [{k: v for k, v in row.items() if k not in ("seconds", "img_per_s")} for row in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)


def test_resume_matches_uninterrupted(tiny_vae_cfg, split, rt, tmp_path):
    """Stop after epoch 1 (as a kill would), resume from the state file: same final weights."""
    full, _ = _train(dataclasses.replace(tiny_vae_cfg, train=dataclasses.replace(tiny_vae_cfg.train, epochs=3)), split, rt)
    state = tmp_path / "state.pt"
    _train(dataclasses.replace(tiny_vae_cfg, train=dataclasses.replace(tiny_vae_cfg.train, epochs=1)), split, rt, state)
    resumed, result = _train(dataclasses.replace(tiny_vae_cfg, train=dataclasses.replace(tiny_vae_cfg.train, epochs=3)),
                             split, rt, state)
    assert result.resumed_from_epoch == 1 and len(result.history) == 3
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoint_round_trip(tiny_vae_cfg, tmp_path):
    model = build("beta_vae", tiny_vae_cfg, 16).eval()
    save_model(model, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    x = torch.rand(2, 3, 16, 16)
    assert loaded.family == "beta_vae" and loaded.cfg == tiny_vae_cfg
    assert torch.equal(model.encode(x), loaded.encode(x))


def test_importance_samples_average_to_minus_the_kl(tiny_vae_cfg):
    """k draws of (decoder mean, log p(z) - log q(z|x)); the log-ratio's mean is -KL(q || p)."""
    from facegen.models.vae import kl_per_dim

    model = build("vae", tiny_vae_cfg, 16).eval()
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        draws = list(model.importance_samples(x, 500, torch.Generator().manual_seed(0)))
        mu, logvar = model.posterior(x)
    assert len(draws) == 500
    assert all(m.shape == x.shape and r.shape == (3,) and torch.isfinite(r).all() for m, r in draws)
    mean_log_ratio = torch.stack([r for _, r in draws]).mean(0)
    assert torch.allclose(mean_log_ratio, -kl_per_dim(mu, logvar).sum(1), atol=0.15)


def test_onecycle_resume_matches_uninterrupted_and_a_changed_schedule_starts_fresh(tiny_vae_cfg, split, rt, tmp_path):
    """A kill after epoch 1 of a 3-epoch one-cycle run resumes onto the same schedule (same weights);
    a state cut for a 1-epoch schedule is set aside rather than continued past its end."""
    cfg = dataclasses.replace(tiny_vae_cfg, train=dataclasses.replace(tiny_vae_cfg.train, epochs=3, schedule="onecycle"))
    full, _ = _train(cfg, split, rt)
    state = tmp_path / "state.pt"

    def kill(epoch, row, images):  # noqa: ANN001  (called before epoch 2's state is saved: 1 is on disk)
        if epoch == 2:
            raise KeyboardInterrupt

    generator = seed_everything(7)  # as _train: seeded before the model is built
    model = rt.prepare(build("vae", cfg, 16))
    with pytest.raises(KeyboardInterrupt):
        fit(model, split, None, cfg.train, rt, generator, state_path=state, on_epoch=kill)
    resumed, result = _train(cfg, split, rt, state)
    assert result.resumed_from_epoch == 1
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    short = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=1))
    state.unlink()
    _train(short, split, rt, state)
    with pytest.warns(UserWarning, match="learning-rate schedule"):
        _, fresh = _train(cfg, split, rt, state)
    assert fresh.resumed_from_epoch == 0 and len(fresh.history) == 3


def test_onecycle_warms_up_then_anneals(tiny_vae_cfg):
    from facegen.training.loop import lr_schedulers

    model = build("vae", tiny_vae_cfg, 16)
    opts = model.optimizers()
    tcfg = dataclasses.replace(tiny_vae_cfg.train, epochs=2, schedule="onecycle")
    sched, = lr_schedulers(opts, tcfg, steps_per_epoch=50).values()
    lrs = []
    for _ in range(100):
        lrs.append(opts["adam"].param_groups[0]["lr"])
        opts["adam"].step()
        sched.step()
    peak = max(range(100), key=lrs.__getitem__)
    assert abs(lrs[peak] - tcfg.lr) < 1e-9 and 25 <= peak <= 35  # peak at 30 % of the steps
    assert lrs[0] < tcfg.lr / 20 and lrs[-1] < tcfg.lr / 100
    assert opts["adam"].param_groups[0]["betas"] == (0.9, 0.999)  # momentum not cycled
    assert lr_schedulers(opts, tiny_vae_cfg.train, 50) == {}  # constant: no scheduler


def _residuals(rms: tuple[float, ...], n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and decoder means whose per-channel residual RMS is ``rms`` (one value: all channels)."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.rand(n, 3, 8, 8, generator=g)
    noise = torch.randn(n, 3, 8, 8, generator=g)
    noise = noise / noise.pow(2).mean((0, 2, 3), keepdim=True).sqrt()
    return mean + noise * torch.tensor(rms).view(1, -1, 1, 1), mean


def test_learned_sigma_converges_to_the_residual_rms():
    x, mean = _residuals((0.05,))
    scale = DecoderScale("learned", 1)
    opt = torch.optim.Adam(scale.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        scale.nll(x, mean).mean().backward()
        opt.step()
    assert float(scale.current().detach().exp()) == pytest.approx(0.05, rel=0.01)


def test_optimal_sigma_is_the_batch_rms_and_its_running_value_is_what_evaluation_scores():
    x, mean = _residuals((0.02, 0.05, 0.1))
    scale = DecoderScale("optimal", 3).train()
    for _ in range(200):  # the running σ forgets its start (σ = 1) at 0.9 per batch
        scale.nll(x, mean)
    assert torch.allclose(scale.current().exp(), torch.tensor([0.02, 0.05, 0.1]), rtol=1e-3)
    frozen = scale.current().clone()
    scale.eval()
    scale.nll(x + 0.3, mean)  # evaluation never moves σ
    assert torch.equal(scale.current(), frozen)
    # at σ = the RMS, the Gaussian NLL per dimension is log σ + ½ log 2πe
    shared = DecoderScale("optimal", 1).train()
    x1, mean1 = _residuals((0.05,))
    nll = shared.nll(x1, mean1).mean() / x1[0].numel()
    assert float(nll) == pytest.approx(math.log(0.05) + 0.5 * math.log(2 * math.pi * math.e), abs=1e-4)


def test_mse_decoder_is_the_notebooks_summed_squared_error_plus_a_constant():
    x, mean = _residuals((0.1,), n=4)
    nll = DecoderScale("mse", 1).nll(x, mean)
    sse = (x - mean).pow(2).flatten(1).sum(1)
    assert torch.allclose(nll, sse + 0.5 * x[0].numel() * math.log(math.pi), rtol=1e-5)


def test_calibrated_vae_scores_its_trained_sigma_and_the_mse_option_does_not(tiny_vae_cfg):
    from facegen.evaluation.likelihood import likelihood_metrics

    torch.manual_seed(0)
    x = make_split(64).images.permute(0, 3, 1, 2).float() / 255
    for sigma in ("optimal", "learned", "mse"):
        model = build("vae", dataclasses.replace(tiny_vae_cfg, sigma=sigma), 16)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for i in range(30):
            out = model.losses(Batch(x[i % 4 * 16:(i % 4 + 1) * 16], torch.zeros(16, 0)))
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        m = likelihood_metrics(model, x[:16], x[16:32], 2, torch.Generator().manual_seed(0), 16)
        trained = model.decoder_log_scale()
        if sigma == "mse":
            assert trained is None and m["decoder_sigma"] < 0.5  # fitted on validation, not √½
        else:
            assert m["decoder_sigma"] == pytest.approx(float(trained.exp()))
