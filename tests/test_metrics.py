"""Each evaluation metric against a known value on a constructed case, and the attribute classifier."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facegen.config import ClassifierConfig, TrainConfig
from facegen.data.dataset import FaceSplit
from facegen.evaluation.disentanglement import disentanglement_scores
from facegen.evaluation.distribution import (frechet_distance, kernel_distance,
                                             precision_recall_density_coverage)
from facegen.models.checkpoint import load_classifier, save_classifier
from facegen.models.classifier import AttributeClassifier
from facegen.runtime import Runtime
from facegen.training.loop import fit


@pytest.fixture
def feats() -> torch.Tensor:
    return torch.randn(400, 16, generator=torch.Generator().manual_seed(0))


# -- distribution ---------------------------------------------------------------------------------
def test_fid_is_zero_for_identical_sets_and_the_squared_mean_shift_for_a_translation(feats):
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, means 2 apart in each of 16 dims: FID = ||Δμ||² = 16 * 4.
    assert frechet_distance(feats, feats + 2.0) == pytest.approx(64.0, rel=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift(feats):
    same, _ = kernel_distance(feats[:200], feats[200:], subsets=20, subset_size=100, seed=0)
    shifted, _ = kernel_distance(feats, feats + 1.0, subsets=20, subset_size=100, seed=0)
    assert abs(same) < 0.05 < shifted
    assert kernel_distance(feats, feats + 1.0, 20, 100, seed=0) == kernel_distance(feats, feats + 1.0, 20, 100, seed=0)


def test_prdc_identical_sets_score_one_and_disjoint_sets_zero(feats):
    same = precision_recall_density_coverage(feats, feats, k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] == pytest.approx(1.0, abs=0.25)
    far = precision_recall_density_coverage(feats, feats + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    # Mode collapse: every fake on one real point -> precise but no recall/coverage.
    collapsed = precision_recall_density_coverage(feats, feats[:1].repeat(50, 1) + 1e-3 * feats[:50], k=5)
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.05 and collapsed["coverage"] < 0.05


def test_frechet_distance_matches_the_matrix_square_root_form_in_both_regimes():
    """The SVD (N < F) and eigendecomposition (N > F) forms equal the textbook formula (scipy sqrtm)."""
    from scipy import linalg

    gen = torch.Generator().manual_seed(0)
    for n, f in ((40, 64), (300, 16)):
        a = torch.randn(n, f, generator=gen, dtype=torch.float64)
        b = 0.7 * torch.randn(n + 5, f, generator=gen, dtype=torch.float64) + 0.3
        s_a, s_b = torch.cov(a.T).numpy(), torch.cov(b.T).numpy()
        expected = float(((a.mean(0) - b.mean(0)) ** 2).sum()) + np.trace(s_a) + np.trace(s_b) \
            - 2 * np.trace(linalg.sqrtm(s_a @ s_b).real)
        assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)  # sqrtm of a singular product: ~1e-8


# -- disentanglement ------------------------------------------------------------------------------
def _factor_codes(kind: str, rng: np.random.Generator, n: int = 2000) -> tuple[np.ndarray, ...]:
    """(train codes, train factors, test codes, test factors): 4 uniform factors, 10-dim codes."""
    factors = rng.random((n, 4))
    noise = 0.01 * rng.normal(size=(n, 6))
    if kind == "perfect":
        codes = np.concatenate([factors * 3 - 1, noise], 1)  # one dim per factor, affine, + unused dims
    elif kind == "rotated":
        q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
        codes = np.concatenate([factors @ q, noise], 1)
    else:
        codes = rng.normal(size=(n, 10))
    cut = n * 3 // 4
    return codes[:cut], factors[:cut], codes[cut:], factors[cut:]


@pytest.mark.parametrize("kind", ["perfect", "random", "rotated"])
def test_mig_dci_sap_on_constructed_codes(kind):
    s = disentanglement_scores(*_factor_codes(kind, np.random.default_rng(0)), bins=20, seed=0)
    if kind == "perfect":
        assert s["mig"] > 0.9 and s["sap"] > 0.95
        assert min(s["dci_disentanglement"], s["dci_completeness"], s["dci_informativeness"]) > 0.95
    elif kind == "random":
        assert s["mig"] < 0.05 and s["sap"] < 0.05
        assert max(s["dci_disentanglement"], s["dci_completeness"], s["dci_informativeness"]) < 0.1
    else:  # entangled but informative: high informativeness, lower disentanglement than perfect
        assert s["dci_informativeness"] > 0.6 and s["mig"] < 0.5 and s["dci_disentanglement"] < 0.7


# -- editing --------------------------------------------------------------------------------------
class ToyJudge:
    """Attribute A is "channel 0 bright", B is "channel 1 bright"; features are channel means."""

    attributes = ("A", "B")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean((2, 3))

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(50 * (self.features(images)[:, :2] - 0.5))


def toy_decode(z: torch.Tensor) -> torch.Tensor:
    """z (N, 2) -> images whose channels 0 and 1 are sigmoid(z0), sigmoid(z1) (channel 2 flat)."""
    chans = torch.stack([torch.sigmoid(z[:, 0]), torch.sigmoid(z[:, 1]), torch.full_like(z[:, 0], 0.5)], 1)
    return chans[:, :, None, None].expand(-1, -1, 4, 4)


# -- the attribute classifier ---------------------------------------------------------------------
def _tiny_split(n: int, seed: int) -> FaceSplit:
    """Attribute 0: left half bright; attribute 1: red channel bright. Images 16 px."""
    g = torch.Generator().manual_seed(seed)
    attrs = (torch.rand(n, 2, generator=g) > 0.5).float()
    img = torch.rand(n, 16, 16, 3, generator=g) * 0.3
    img[:, :, :8, :] += 0.6 * attrs[:, 0, None, None, None]
    img[..., 0] += 0.6 * attrs[:, 1, None, None]
    return FaceSplit((img.clamp(0, 1) * 255).to(torch.uint8), attrs, ("Smiling", "Male"))


def test_classifier_trains_and_round_trips(tmp_path):
    torch.manual_seed(0)
    rt = Runtime(torch.device("cpu"), None, channels_last=False)
    cfg = ClassifierConfig(width=4, train=TrainConfig(epochs=4, batch_size=32, lr=1e-2))
    model = AttributeClassifier(("Smiling", "Male"), cfg, 16)
    history = fit(model, _tiny_split(256, 0), _tiny_split(64, 1), cfg.train, rt, torch.Generator().manual_seed(0)).history
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert history[-1]["val/acc"] > 0.9
    x = _tiny_split(8, 2).batch(torch.arange(8), rt.device, False).images
    assert model.eval().predict_proba(x).shape == (8, 2)
    assert model.features(x).shape == (8, model.feature_dim)
    save_classifier(model, tmp_path / "model.pt")
    loaded = load_classifier(tmp_path / "model.pt")
    assert loaded.attributes == ("Smiling", "Male")
    torch.testing.assert_close(loaded.predict_proba(x), model.predict_proba(x))


# -- the analyses, through the evaluation context -------------------------------------------------
def test_new_analyses_run_on_a_tiny_vae(tiny_vae_cfg, rt, tmp_path):
    import dataclasses

    from facegen.config import EvaluateConfig
    from facegen.evaluation.analyses import attribute_edits, disentanglement, sample_quality
    from facegen.evaluation.context import EvalContext
    from facegen.models import build
    from tests.conftest import ATTRS, make_split

    torch.manual_seed(0)
    classifier = AttributeClassifier(ATTRS, ClassifierConfig(width=4), 16).eval()
    train, test = make_split(48, 16), make_split(40, 16, seed=1)
    ctx = EvalContext(model=build("vae", tiny_vae_cfg, 16).eval(), family="vae", train=train, test=test,
                      cfg=EvaluateConfig(num_samples=32, batch_size=16, edit_faces=8, grid_size=2), rt=rt, seed=0,
                      out_dir=tmp_path, classifier=classifier)
    quality = sample_quality(ctx)
    assert {"fid_facegen", "kid_facegen", "precision", "recall", "density", "coverage"} <= set(quality)
    assert any("Inception FID/KID skipped" in n for n in ctx.notes)  # no cached reference features here
    edits = attribute_edits(ctx)
    assert (tmp_path / "attribute_Smiling.png").is_file()
    assert 0 <= edits["edit_success_at_pres90_mean"] <= 1 and "edit_success_at_pres90_Male" in edits
    assert disentanglement(ctx) == {} and any("no ground-truth factors" in n for n in ctx.notes)
    g = torch.Generator().manual_seed(0)
    ctx.train = dataclasses.replace(train, factors=torch.rand(48, 3, generator=g), factor_names=("a", "b", "c"))
    ctx.test = dataclasses.replace(test, factors=torch.rand(40, 3, generator=g), factor_names=("a", "b", "c"))
    assert {"mig", "sap", "dci_disentanglement", "dci_completeness", "dci_informativeness"} == set(disentanglement(ctx))
    ctx.classifier = None
    assert sample_quality(ctx) == {"sampling_temperature": 1.0}  # nothing to score against; how it would sample


def test_chunked_ssim_equals_torchmetrics_on_the_whole_batch():
    """Evaluation computes SSIM in chunks to bound memory; the mean must not change."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    from facegen.evaluation.analyses import _ssim

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(37, 3, 16, 16, generator=gen)
    y = (x + 0.2 * torch.rand(37, 3, 16, 16, generator=gen)).clamp(0, 1)
    whole = structural_similarity_index_measure(y, x, data_range=1.0)
    assert torch.allclose(_ssim(y, x, chunk=8), whole, atol=1e-6)


def test_judge_accuracy_reuses_the_inversions_of_reconstruction(rt, tmp_path, monkeypatch):
    """A GAN reconstructs by latent optimisation: judge_accuracy scores the same num_inversions faces
    reconstruction inverted, without inverting them again."""
    from facegen.config import DCGANConfig, EvaluateConfig
    from facegen.evaluation.analyses import judge_accuracy, reconstruction
    from facegen.evaluation.context import EvalContext
    from facegen.models import build
    from tests.conftest import ATTRS, make_split

    torch.manual_seed(0)
    model = build("dcgan", DCGANConfig(nz=8, ngf=8, ndf=8, inversion_steps=3, inversion_restarts=1), 16).eval()
    calls = []
    invert = model.reconstruct
    monkeypatch.setattr(model, "reconstruct", lambda x: calls.append(len(x)) or invert(x))
    classifier = AttributeClassifier(ATTRS, ClassifierConfig(width=4), 16).eval()
    ctx = EvalContext(model=model, family="dcgan", train=make_split(32, 16), test=make_split(40, 16, seed=1),
                      cfg=EvaluateConfig(num_samples=16, batch_size=8, num_inversions=12, grid_size=2), rt=rt,
                      seed=0, out_dir=tmp_path, classifier=classifier)
    recon = reconstruction(ctx)
    judged = judge_accuracy(ctx)
    assert sum(calls) == 12  # inverted once, in batches of 8
    assert set(judged) == {"judge_accuracy_real", "judge_accuracy_recon",
                           *(f"judge_accuracy_{k}_{a}" for k in ("real", "recon") for a in ATTRS)}
    truth = ctx.test.attrs[:12].bool()
    x = ctx.test_images(12)
    expected = ((classifier.predict_proba(x) > 0.5) == truth).float().mean()
    assert judged["judge_accuracy_real"] == pytest.approx(float(expected))
    assert recon["recon_mse"] > 0
    ctx.classifier = None
    assert judge_accuracy(ctx) == {} and any("Judge accuracy on reconstructions skipped" in n for n in ctx.notes)
