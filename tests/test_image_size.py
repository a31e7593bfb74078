"""128×128 faces, as the notebook allows (`data.image_size: 128`): every family, the prior, the
classifier and the evaluation analyses run at 128 with tiny widths, beside the default-size tests.

The architectures derive their depth from the image size (VAE/VQ-VAE strides, DCGAN stages, the
classifier's pooled head, the prior's code grid), so one step of each at 128 checks every shape.
"""
from __future__ import annotations

import pytest
import torch

from facegen.config import ClassifierConfig, DCGANConfig, EvaluateConfig, PriorConfig, TrainConfig, VAEConfig, VQVAEConfig
from facegen.data.dataset import Batch
from facegen.evaluation.analyses import attribute_edits, likelihood, reconstruction
from facegen.evaluation.context import EvalContext
from facegen.models import build
from facegen.models.base import RECONSTRUCT
from facegen.models.classifier import AttributeClassifier
from facegen.models.pixelcnn import PixelCNNPrior
from facegen.runtime import eval_mode
from tests.conftest import ATTRS, make_split

SIZE = 128
TINY = {
    "vae": VAEConfig(latent_dim=4, widths=(8, 16), train=TrainConfig(batch_size=2)),
    "beta_vae": VAEConfig(latent_dim=4, widths=(8, 16), beta=4.0, train=TrainConfig(batch_size=2)),
    "vqvae": VQVAEConfig(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1, num_embeddings=16,
                         embedding_dim=4, train=TrainConfig(batch_size=2)),
    "dcgan": DCGANConfig(nz=8, ngf=4, ndf=4, ema_decay=0.0, inversion_steps=2, inversion_restarts=1,
                         train=TrainConfig(batch_size=2)),  # no EMA: its BatchNorm calibration is 16 batches of 64
}


@pytest.mark.parametrize("family", list(TINY))
def test_every_family_trains_samples_and_reconstructs_at_128(family):
    torch.manual_seed(0)
    model = build(family, TINY[family], SIZE)
    batch = make_split(2, SIZE).batch(torch.arange(2), torch.device("cpu"))
    losses = model.train_step(Batch(batch.images, batch.attrs), model.optimizers())
    assert all(torch.isfinite(v).all() for v in losses.values())
    with eval_mode(model):
        if family == "vqvae":  # samples through its prior: a 32×32 code grid at 128 px
            attrs = make_split(8, SIZE).attrs
            rows, probs = PixelCNNPrior.attribute_table(attrs)
            model.attach_prior(PixelCNNPrior(PriorConfig(hidden=8, layers=2), 16, (SIZE // 4, SIZE // 4), ATTRS,
                                             rows, probs))
        assert model.sample(2, torch.Generator().manual_seed(0)).shape == (2, 3, SIZE, SIZE)
        if RECONSTRUCT in model.capabilities:
            assert model.reconstruct(batch.images).shape == (2, 3, SIZE, SIZE)


def test_classifier_and_analyses_at_128(rt, tmp_path):
    """The classifier's pooled head and the evaluation analyses are size-agnostic."""
    classifier = AttributeClassifier(ATTRS, ClassifierConfig(width=4), SIZE).eval()
    split = make_split(8, SIZE)
    assert classifier.predict_proba(split.batch(torch.arange(8), rt.device).images).shape == (8, len(ATTRS))
    model = build("vae", TINY["vae"], SIZE).eval()
    cfg = EvaluateConfig(num_samples=16, batch_size=4, grid_size=2, edit_faces=4, edit_chance_directions=1,
                         nll_images=4, nll_importance_samples=2)
    ctx = EvalContext(model=model, family="vae", train=split, test=make_split(8, SIZE, seed=1), val=split,
                      cfg=cfg, rt=rt, seed=0, out_dir=tmp_path, classifier=classifier)
    assert 0 < reconstruction(ctx)["recon_psnr"] < 100
    assert 0 < likelihood(ctx)["nll_bits_per_dim"] < 16
    assert 0 <= attribute_edits(ctx)["edit_success_at_pres90_mean"] <= 1
