"""DCGAN family: the notebook's generator/discriminator, a choice of loss, spectral norm and an EMA G.

Architecture, as in the notebook: G maps z (nz) through a 4x4 transposed conv to a 4x4 map, then
stride-2 transposed convs (BatchNorm, ReLU) that halve the width while doubling the resolution,
ending in tanh; D mirrors it with stride-2 convs (BatchNorm except on the first layer, LeakyReLU
0.2) down to 4x4 and a 4x4 conv to one score. Layer counts follow ``image_size`` (any power of two
>= 8), so 64x64 is exactly the notebook's layout; weights start from N(0, 0.02) as there.

Differences from the notebook, all behaviour-preserving or optional:
* D returns a logit and BCE is computed with ``binary_cross_entropy_with_logits``: the same loss as
  ``BCELoss(sigmoid(.))`` with one fused, numerically safe op.
* ``loss: hinge`` (D: relu(1 - D(x)) + relu(1 + D(G(z))), G: -D(G(z))) and ``spectral_norm`` in D
  are options. With spectral norm D drops BatchNorm (as in SN-GAN): the Lipschitz bound is the
  point of SN, and BatchNorm would undo it.
* An exponential moving average of G's weights (``ema_decay``; 0 disables) is what samples,
  decodes and gets evaluated: averaging over the last ~1/(1-decay) steps smooths the oscillation of
  adversarial training. Its BatchNorm running statistics are re-estimated for its own weights at
  every epoch end (the raw G's statistics belong to different weights).
* Real images arrive in [0, 1] and are mapped to tanh's [-1, 1] for D; G's output is mapped back
  to [0, 1] for every public method.
* Three small-data methods, off by default (each measured on the screening seeds, docs/defaults.md):
  DiffAugment (``diffaugment``: the same random, differentiable transforms on every image D sees,
  real or fake, in both steps; models/diffaugment.py), the R1 penalty on D's gradient at real images
  (``r1_gamma``), and TTUR (``d_lr_ratio``: D's learning rate a multiple of G's). With all three off
  the step is the plain one above, operation for operation (the committed runs were made before
  they existed).

The GAN has no encoder: ``encode`` inverts G by latent optimisation (models/inversion.py), so
reconstructions are labelled as inversions, and attribute edits use classifier boundaries fitted
on samples (latent/boundaries.py) instead of encoded mean differences.

Defaults in params.yaml, chosen by measurement on the default data (9600 procedural faces, 2-core
CPU); today's widths and epochs (G 32, D 16, 8 epochs) and the small-data methods are measured in
docs/defaults.md. The first screen, which the loss and the D's normalisation still rest on (quality =
FID on attribute-classifier features of 1000 samples vs 1000 test faces, as in ``evaluate``: the VAE
scores ~9, uniform noise ~112; plus the mean per-image pixel std, 0.23 for real faces, and looking
at the grids):
* width 16: CPU cost per train step is ~0.16 s at ngf=ndf=16, 0.30 s at 24, 0.45 s at 32 and
  1.6 s at the notebook's 64 (batch 64, one thread), so only width 16 gets ~10 epochs into the
  ~3 minute budget.
* hinge loss, BatchNorm D (``spectral_norm: false``), lr 5e-4, 10 epochs: FID 135 -> 42 (epoch 3)
  -> 15 (5) -> 9.2 (10), per-image std 0.21, D(x) ~0.82, D(G(z)) ~0.17. The notebook's BCE with the
  same D: 92 -> 26 (5) -> 10.8 (10), noisier early on. Spectral norm in this narrow D is too weak a
  critic: D(G(z)) stays ~0.5, G never learns contrast (per-image std 0.05: grey, washed-out faces)
  and FID stays at 111 after 10 epochs (118-124 with ndf=32). All runs EMA 0.99, seed 0, a script
  calling ``training.loop.fit`` on the pipeline's prepared data, scored with its classifier.
* lr 5e-4 (the notebook: 2e-4) and EMA decay 0.99 were measured under the earlier spectral-norm
  default and not re-measured with the BatchNorm D, so only their ranking carries over:
  lr 5e-4 reached FID 79 after 4 epochs vs 129 at 2e-4; the EMA G ended at 82 (decay 0.99), 85
  (0.995), 126 (0.999, still dragging early weights after 1500 steps) vs 82 for the raw G, with
  visibly fewer checkerboard artefacts and much smaller epoch-to-epoch swings than the raw G.
"""
from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from facegen.config import DCGANConfig
from facegen.data.dataset import Batch
from facegen.models.diffaugment import diff_augment
from facegen.models.inversion import invert
from facegen.models.base import ADVERSARIAL, EDIT, ENCODE, RECONSTRUCT, GenerativeModel
from facegen.runtime import eval_mode, to_device

FIXED_NOISE = 64        # images in the per-epoch fixed-noise grid
CALIBRATION_BATCHES = 16  # batches of prior z used to re-estimate the EMA G's BatchNorm statistics
INVERSION_SEED = 0      # encode(x) must be a deterministic function of x: fixed restart draws


def _num_stride2(image_size: int) -> int:
    """Stride-2 layers between the 4x4 map and ``image_size`` (4 for the notebook's 64x64)."""
    n = int(math.log2(image_size)) - 2
    if image_size < 8 or 4 * 2 ** n != image_size:
        raise ValueError(f"DCGAN needs a power-of-two image_size >= 8, got {image_size}")
    return n


def init_weights(m: nn.Module) -> None:
    """The notebook's ``weights_init``: conv weights ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def generator_net(nz: int, ngf: int, image_size: int) -> nn.Sequential:
    n = _num_stride2(image_size)
    width = ngf * 2 ** (n - 1)
    layers: list[nn.Module] = [nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width),
                               nn.ReLU(inplace=True)]
    for _ in range(n - 1):
        layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2),
                   nn.ReLU(inplace=True)]
        width //= 2
    layers += [nn.ConvTranspose2d(width, 3, 4, 2, 1, bias=False), nn.Tanh()]
    net = nn.Sequential(*layers)
    net.apply(init_weights)
    return net


def discriminator_net(ndf: int, image_size: int, use_spectral_norm: bool) -> nn.Sequential:
    n = _num_stride2(image_size)
    wrap = spectral_norm if use_spectral_norm else (lambda m: m)
    layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
    width = ndf
    for _ in range(n - 1):
        layers.append(nn.Conv2d(width, width * 2, 4, 2, 1, bias=False))
        if not use_spectral_norm:
            layers.append(nn.BatchNorm2d(width * 2))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        width *= 2
    layers.append(nn.Conv2d(width, 1, 4, 1, 0, bias=False))  # logit; the loss applies the sigmoid
    net = nn.Sequential(*layers)
    net.apply(init_weights)
    for i, m in enumerate(net):
        if isinstance(m, nn.Conv2d):
            net[i] = wrap(m)
    return net


class DCGAN(GenerativeModel):
    capabilities: ClassVar[frozenset[str]] = frozenset({ENCODE, RECONSTRUCT, EDIT, ADVERSARIAL})
    edit_directions: ClassVar[str] = "classifier_boundary"
    reconstruction_method: ClassVar[str] = "inversion"

    def __init__(self, family: str, cfg: DCGANConfig, image_size: int) -> None:
        super().__init__(family, cfg, image_size)
        self.g = generator_net(cfg.nz, cfg.ngf, image_size)
        self.d = discriminator_net(cfg.ndf, image_size, cfg.spectral_norm)
        self.g_ema = copy.deepcopy(self.g).requires_grad_(False).eval() if cfg.ema_decay > 0 else None
        # A buffer, so the grid shows the same z across epochs *and* across a resumed run.
        self.register_buffer("fixed_noise", torch.randn(FIXED_NOISE, cfg.nz))

    @property
    def sampler(self) -> nn.Module:
        """The generator used for everything but training: the EMA copy when enabled."""
        return self.g_ema if self.g_ema is not None else self.g

    def train(self, mode: bool = True) -> DCGAN:
        super().train(mode)
        if self.g_ema is not None:
            self.g_ema.eval()  # never trained, never updates its statistics from a batch
        return self

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Adam for each player; D's learning rate is ``d_lr_ratio`` × G's (TTUR, Heusel et al. 2017)."""
        lr, betas = self.cfg.train.lr, (self.cfg.beta1, 0.999)
        return {"d": torch.optim.Adam(self.d.parameters(), lr=lr * self.cfg.d_lr_ratio, betas=betas),
                "g": torch.optim.Adam(self.g.parameters(), lr=lr, betas=betas)}

    # -- latent space ---------------------------------------------------------------------------
    def latent_prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return to_device(torch.randn(n, self.cfg.nz, generator=generator), self.fixed_noise.device)

    def _generate(self, net: nn.Module, z: torch.Tensor) -> torch.Tensor:
        """G's raw tanh output in [-1, 1]."""
        return net(z.view(z.shape[0], self.cfg.nz, 1, 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (self._generate(self.sampler, z) + 1) / 2

    def sample(self, n: int, generator: torch.Generator, attrs: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.latent_prior(n, generator))

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """The discriminator's P(real) (N,) for images in [0, 1]: where the adversarial game ended."""
        return torch.sigmoid(self.d(x * 2 - 1)).flatten()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """GAN inversion: the z whose decoding best matches ``x`` in pixel MSE (not an encoder)."""
        cfg = self.cfg
        return invert(self.decode, x, cfg.nz, steps=cfg.inversion_steps, restarts=cfg.inversion_restarts,
                      lr=cfg.inversion_lr, rng=torch.Generator().manual_seed(INVERSION_SEED)).z

    # -- training -------------------------------------------------------------------------------
    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "hinge":
            return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))

    def _g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "hinge":
            return -fake.mean()
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))  # non-saturating, as notebook

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        """D's logits (N,) for images in [-1, 1], through the DiffAugment policy when one is set."""
        return self.d(diff_augment(x, self.cfg.diffaugment_policy)).flatten()

    def _r1(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D's logits on ``real`` and the R1 penalty γ/2 · E‖∇ₓD(x)‖² (Mescheder et al. 2018, "Which
        training methods for GANs do actually converge?"): zero-centred at the data, it damps D's
        oscillation around the equilibrium. The gradient is taken at the un-augmented image, as in
        StyleGAN2-ADA, so the penalty does not depend on the augmentation draw."""
        real = real.detach().requires_grad_(True)
        scores = self._score(real)
        (grad,) = torch.autograd.grad(scores.float().sum(), real, create_graph=True)
        return scores, self.cfg.r1_gamma / 2 * grad.float().square().sum(dim=(1, 2, 3)).mean()

    def train_step(self, batch: Batch, opts: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """The notebook's step: D on a real and a fake batch, then G against the *updated* D.

        Real and fake go through D separately (not concatenated) so D's BatchNorm sees the same
        per-batch statistics as in the notebook. With ``diffaugment`` every image D sees, in both
        steps, is augmented; with ``r1_gamma`` D's loss adds the R1 penalty.
        """
        real = batch.images * 2 - 1
        z = torch.randn(real.shape[0], self.cfg.nz, device=real.device)
        fake = self._generate(self.g, z)

        opts["d"].zero_grad(set_to_none=True)
        if self.cfg.r1_gamma > 0:
            d_real, r1 = self._r1(real)
        else:
            d_real, r1 = self._score(real), None
        d_fake = self._score(fake.detach())
        loss_d = self._d_loss(d_real, d_fake)
        (loss_d if r1 is None else loss_d + r1).backward()
        opts["d"].step()

        opts["g"].zero_grad(set_to_none=True)
        self.d.requires_grad_(False)  # G's step needs gradients through D, not for D's weights
        loss_g = self._g_loss(self._score(fake))
        loss_g.backward()
        self.d.requires_grad_(True)
        opts["g"].step()
        self._update_ema()
        # D(x), D(G(z)) as probabilities (the logistic reading of D's score for either loss).
        out = {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
               "d_real": torch.sigmoid(d_real.detach()).mean(), "d_fake": torch.sigmoid(d_fake.detach()).mean()}
        if r1 is not None:
            out["r1"] = r1.detach()
        return out

    @torch.no_grad()
    def _update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * g, for every parameter (buffers: calibrate_batchnorm)."""
        if self.g_ema is None:
            return
        for e, p in zip(self.g_ema.parameters(), self.g.parameters()):
            e.lerp_(p, 1 - self.cfg.ema_decay)

    @torch.no_grad()
    def calibrate_batchnorm(self, batches: int = CALIBRATION_BATCHES, batch_size: int = 64) -> None:
        """Re-estimate the sampler's BatchNorm running statistics from prior samples ("standing
        statistics"): exact averages for *its* weights, from a fixed draw so it is deterministic."""
        net, rng = self.sampler, torch.Generator().manual_seed(INVERSION_SEED)
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        was_training = net.training
        net.train()
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        for _ in range(batches):
            self._generate(net, self.latent_prior(batch_size, rng))
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        net.train(was_training)

    def epoch_end(self, epoch: int) -> dict[str, torch.Tensor]:
        self.calibrate_batchnorm()
        with eval_mode(self):
            return {"fixed_noise": self.decode(self.fixed_noise)}
