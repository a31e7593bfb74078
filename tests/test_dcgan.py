"""DCGAN family, GAN inversion and classifier boundaries, on tiny 16x16 models and data."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from facegen.config import DCGANConfig, EvaluateConfig, TrainConfig
from facegen.errors import CheckpointError
from facegen.evaluation.context import EvalContext
from facegen.latent.boundaries import classifier_boundaries
from facegen.models.inversion import invert
from facegen.models import build
from facegen.data.dataset import Batch
from facegen.evaluation.analyses import sample_diversity
from facegen.models.base import ADVERSARIAL
from facegen.runtime import eval_mode, seed_everything
from facegen.models.checkpoint import load_model, safe_load, save_model
from facegen.training.loop import fit
from tests.conftest import make_split

SIZE = 16


@pytest.fixture
def cfg() -> DCGANConfig:
    return DCGANConfig(nz=8, ngf=8, ndf=8, ema_decay=0.9, inversion_steps=5, inversion_restarts=2,
                       inversion_lr=0.05, train=TrainConfig(epochs=2, batch_size=16, lr=2e-4))


def _model(cfg: DCGANConfig, seed: int = 0):
    seed_everything(seed)
    return build("dcgan", cfg, SIZE)


def _batch(n: int = 16) -> Batch:
    return make_split(n, SIZE).batch(torch.arange(n), torch.device("cpu"))


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


class BrightnessClassifier:
    """Toy stand-in for the attribute classifier: 'Bright' = mean intensity, 'Dark' its opposite."""

    attributes = ("Bright", "Dark")

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(20 * (images.float().mean((1, 2, 3)) - 0.5))
        return torch.stack([p, 1 - p], 1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().mean((2, 3))


def test_shapes_range_and_sizes(cfg):
    model = _model(cfg)
    z = model.latent_prior(5, torch.Generator().manual_seed(0))
    assert z.shape == (5, 8)
    with eval_mode(model):
        x = model.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 3, SIZE, SIZE) and 0 <= x.min() and x.max() <= 1
    assert build("dcgan", cfg, 64).decode(torch.zeros(1, 8)).shape == (1, 3, 64, 64)  # the notebook's layout
    with pytest.raises(ValueError, match="power-of-two"):
        build("dcgan", cfg, 24)


def test_train_step_updates_both_networks(cfg):
    model = _model(cfg)
    g0, d0 = _snapshot(model.g), _snapshot(model.d)
    out = model.train_step(_batch(), model.optimizers())
    assert set(out) == {"loss_d", "loss_g", "d_real", "d_fake"}
    assert all(v.dim() == 0 and torch.isfinite(v) and not v.requires_grad for v in out.values())
    assert 0 <= out["d_real"] <= 1 and 0 <= out["d_fake"] <= 1
    assert all(not torch.equal(a, b) for a, b in zip(g0, model.g.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d0, model.d.parameters()))
    assert all(p.requires_grad for p in model.d.parameters())  # G's step froze D only temporarily


def test_ema_generator_follows_the_decay_rule(cfg):
    model = _model(cfg)
    opts = model.optimizers()
    model.train_step(_batch(), opts)
    ema_before = _snapshot(model.g_ema)
    model.train_step(_batch(), opts)
    for e0, e1, g in zip(ema_before, model.g_ema.parameters(), model.g.parameters()):
        assert torch.allclose(e1, 0.9 * e0 + 0.1 * g, atol=1e-6)
        assert not torch.equal(e1, g)
    z = model.latent_prior(4, torch.Generator().manual_seed(1))
    with eval_mode(model):
        assert torch.equal(model.decode(z), (model.g_ema(z.view(4, 8, 1, 1)) + 1) / 2)
        assert not torch.allclose(model.decode(z), (model.g(z.view(4, 8, 1, 1)) + 1) / 2)
    no_ema = _model(dataclasses.replace(cfg, ema_decay=0.0))
    assert no_ema.g_ema is None and no_ema.sampler is no_ema.g


def test_epoch_end_grid_uses_fixed_noise(cfg):
    model = _model(cfg)
    first = model.epoch_end(0)["fixed_noise"]
    assert first.shape == (64, 3, SIZE, SIZE)
    assert torch.equal(first, model.epoch_end(1)["fixed_noise"])  # same z, same weights -> same grid
    assert model.g_ema.training is False


def test_inversion_lowers_reconstruction_error(cfg):
    model = _model(cfg)
    model.calibrate_batchnorm(batches=2, batch_size=16)
    model.eval()
    with torch.no_grad():
        targets = model.decode(model.latent_prior(6, torch.Generator().manual_seed(5)))
    result = invert(model.decode, targets, 8, steps=30, restarts=3, lr=0.1, rng=torch.Generator().manual_seed(0))
    assert result.z.shape == (6, 8) and result.loss_trace.shape == (6, 30)
    assert (result.loss < result.loss_trace[:, 0]).all()
    assert result.loss.mean() < 0.5 * result.loss_trace[:, 0].mean()
    with pytest.raises(ValueError, match="steps"):
        invert(model.decode, targets, 8, steps=0, restarts=1, lr=0.1, rng=torch.Generator())
    # As evaluation calls it: reconstruct under inference_mode, deterministic.
    with eval_mode(model):
        a, b = model.reconstruct(targets), model.reconstruct(targets)
    assert a.shape == targets.shape and torch.equal(a, b)


def test_boundary_is_unit_norm_and_edits_move_the_score(cfg):
    model = _model(cfg)
    model.calibrate_batchnorm(batches=2, batch_size=16)
    clf = BrightnessClassifier()
    directions = classifier_boundaries(model, clf, ("Bright", "Dark"), 400, torch.Generator().manual_seed(0), 128)
    assert set(directions) == {"Bright", "Dark"}
    for n in directions.values():
        assert n.shape == (8,) and torch.isclose(n.norm(), torch.tensor(1.0), atol=1e-5)
    assert torch.dot(directions["Bright"], directions["Dark"]) < -0.9  # opposite attributes, opposite normals
    z = model.latent_prior(64, torch.Generator().manual_seed(1))
    with eval_mode(model):
        score = [clf.predict_proba(model.decode(z + s * directions["Bright"]))[:, 0].mean() for s in (-3, 0, 3)]
    assert score[0] < score[1] < score[2]
    with pytest.raises(CheckpointError, match="Smiling"):
        classifier_boundaries(model, clf, ("Smiling",), 10, torch.Generator(), 10)


def _fit(cfg, rt, epochs, state_path):
    model = rt.prepare(_model(cfg, seed=3))
    tcfg = dataclasses.replace(cfg.train, epochs=epochs)
    return model, fit(model, make_split(48, SIZE), None, tcfg, rt, seed_everything(3), state_path=state_path)


def test_resume_restores_both_optimisers_and_ema(cfg, rt, tmp_path):
    state = tmp_path / "state.pt"
    _fit(cfg, rt, 1, state)
    saved = safe_load(state)
    assert set(saved["optimizers"]) == {"d", "g"}
    assert all(saved["optimizers"][k]["state"] for k in ("d", "g"))
    assert any(k.startswith("g_ema.") for k in saved["model"])
    resumed, result = _fit(cfg, rt, 2, state)
    straight, _ = _fit(cfg, rt, 2, None)
    assert result.resumed_from_epoch == 1
    assert {"train/loss_d", "train/loss_g", "train/d_real", "train/d_fake"} <= set(result.history[-1])
    for (name, a), b in zip(resumed.state_dict().items(), straight.state_dict().values()):
        assert torch.equal(a, b), name


def test_hinge_spectral_norm_variant_trains_and_round_trips(cfg, rt, tmp_path):
    cfg = dataclasses.replace(cfg, loss="hinge", spectral_norm=True)
    model, result = _fit(cfg, rt, 1, None)
    assert all(torch.isfinite(torch.tensor(v)) for v in result.history[-1].values())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.d.modules())
    save_model(model, tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    with eval_mode(model):
        expected = model.sample(4, torch.Generator().manual_seed(0))
    with eval_mode(loaded):
        assert torch.equal(loaded.sample(4, torch.Generator().manual_seed(0)), expected)


def test_sample_diversity_analysis_writes_its_figure(cfg, rt, tmp_path):
    model = _model(cfg)
    ctx = EvalContext(model=model, family="dcgan", train=make_split(32, SIZE), test=make_split(32, SIZE, seed=1),
                      cfg=EvaluateConfig(num_samples=32, batch_size=16), rt=rt, seed=0, out_dir=tmp_path,
                      classifier=BrightnessClassifier())
    assert ADVERSARIAL in model.capabilities
    metrics = sample_diversity(ctx)
    assert (tmp_path / "diversity.png").is_file()
    expected = {"sample_diversity_ratio", "sample_diversity_ratio_features", "d_real_test", "d_fake_samples"}
    assert expected <= set(metrics)
    assert metrics["sample_diversity_ratio"] > 0 and ctx.notes


def test_diffaugment_policies_are_differentiable_random_and_keep_shape():
    from facegen.config import DIFFAUGMENT_POLICIES
    from facegen.models.diffaugment import POLICIES, diff_augment

    assert set(POLICIES) == set(DIFFAUGMENT_POLICIES)  # the config validates the names the module applies
    x = (torch.rand(8, 3, SIZE, SIZE) * 2 - 1).requires_grad_(True)
    assert torch.equal(diff_augment(x, ()), x)  # no policy: the identity (the notebook's D input)
    for policy in [(p,) for p in POLICIES] + [tuple(POLICIES)]:
        torch.manual_seed(0)
        a = diff_augment(x, policy)
        b = diff_augment(x, policy)  # a second draw differs
        assert a.shape == x.shape and not torch.equal(a, b)
        (grad,) = torch.autograd.grad(a.sum(), x)
        assert grad.abs().sum() > 0  # G's gradient flows through the augmentation
    torch.manual_seed(1)
    cut = diff_augment(x.detach() * 0 + 1, ("cutout",))
    zeros = (cut == 0).float().mean((1, 2, 3))  # a half-side square, clipped at the border: 1/16..1/4
    assert ((zeros > 0) & (zeros <= 0.25 + 1e-6)).all()
    with pytest.raises(Exception, match="flip"):
        dataclasses.replace(DCGANConfig(), diffaugment="color,flip")
    assert DCGANConfig(diffaugment=" color , cutout").diffaugment_policy == ("color", "cutout")


def test_small_data_methods_change_the_step_and_off_is_the_notebook_step(cfg):
    # Off (the defaults): exactly the plain step; on: R1 reported, D's lr scaled, augmented D inputs.
    plain, same = _model(cfg), _model(cfg)
    torch.manual_seed(0)
    plain.train_step(_batch(), plain.optimizers())
    torch.manual_seed(0)
    same.train_step(_batch(), same.optimizers())
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), same.parameters()))
    on = _model(dataclasses.replace(cfg, diffaugment="color,translation,cutout", r1_gamma=10.0, d_lr_ratio=4.0))
    opts = on.optimizers()
    assert opts["d"].defaults["lr"] == 4 * opts["g"].defaults["lr"] == 4 * cfg.train.lr
    torch.manual_seed(0)
    out = on.train_step(_batch(), opts)
    assert set(out) == {"loss_d", "loss_g", "d_real", "d_fake", "r1"}
    assert out["r1"] > 0 and all(torch.isfinite(v) for v in out.values())
    assert all(p.grad is None or not p.grad.requires_grad for p in on.d.parameters())  # no graph kept


def test_ttur_onecycle_peaks_at_each_players_own_rate(cfg):
    from facegen.training.loop import lr_schedulers

    model = _model(dataclasses.replace(cfg, d_lr_ratio=2.0))
    opts = model.optimizers()
    lr_schedulers(opts, dataclasses.replace(cfg.train, schedule="onecycle", epochs=1), 10)
    peak = {k: opt.param_groups[0]["max_lr"] for k, opt in opts.items()}
    assert peak == {"d": 2 * cfg.train.lr, "g": cfg.train.lr}
