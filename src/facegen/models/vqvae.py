"""VQ-VAE: conv encoder -> vector quantiser -> conv decoder, sampled through a PixelCNN prior.

Architecture follows the notebook's ``VQVAE`` (two stride-2 4x4 convs to a 16x16 map for 64x64
input, a 3x3 conv, a 1x1 projection to the code dimension; the mirrored decoder ending in a
sigmoid), with two changes:

* the residual stacks of the original VQ-VAE paper (``num_residual_layers`` blocks of
  ReLU-3x3-ReLU-1x1 with ``num_residual_hiddens`` channels) after the encoder's 3x3 conv and the
  decoder's first conv. The notebook declares ``num_residual_hiddens`` but never builds them;
  ``num_residual_layers: 0`` gives the notebook's network.
* the notebook applies two 1x1 convs back to back before quantising (the encoder's last layer and
  ``_pre_vq_conv``); two linear maps compose to one, so only one is kept.

Loss is the notebook's: mean pixel MSE + the quantiser's codebook/commitment terms.

The latent space for edits and interpolation is the *continuous* pre-quantisation map z_e
(``encode``); ``decode`` quantises before decoding, so every decoded image is made of codebook
vectors like the training reconstructions. ``sample`` draws code maps from the autoregressive prior
that ``fit_prior`` trains on this model's codes; ``models.checkpoint.load_trained`` attaches it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from facegen.config import VQVAEConfig
from facegen.data.dataset import Batch
from facegen.errors import FacegenError
from facegen.models.base import (EDIT, ENCODE, LIKELIHOOD, QUANTIZE, RECONSTRUCT, GenerativeModel,
                                 SingleLossTraining)
from facegen.models.quantize import VectorQuantizer
from facegen.runtime import eval_mode

if TYPE_CHECKING:  # the prior is attached by models.checkpoint; training a VQ-VAE never needs its code
    from facegen.models.pixelcnn import PixelCNNPrior


class ResidualStack(nn.Module):
    """The VQ-VAE paper's residual blocks: x + 1x1(ReLU(3x3(ReLU(x)))), then a final ReLU."""

    def __init__(self, channels: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 3, 1, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1))
            for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return F.relu(x)


MARGINAL_ROWS = 32  # attribute combinations summed in the image likelihood's marginal code NLL


class VQVAE(SingleLossTraining, GenerativeModel):
    capabilities: ClassVar[frozenset[str]] = frozenset({ENCODE, RECONSTRUCT, EDIT, QUANTIZE, LIKELIHOOD})

    def __init__(self, family: str, cfg: VQVAEConfig, image_size: int) -> None:
        super().__init__(family, cfg, image_size)
        h, r, d = cfg.num_hiddens, cfg.num_residual_hiddens, cfg.embedding_dim
        self.grid = image_size // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(3, h // 2, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(h // 2, h, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(h, h, 3, 1, 1),
            ResidualStack(h, r, cfg.num_residual_layers),
            nn.Conv2d(h, d, 1))
        self.quantizer = VectorQuantizer(cfg.num_embeddings, d, cfg.commitment_cost, ema=cfg.ema,
                                         decay=cfg.ema_decay, epsilon=cfg.ema_epsilon,
                                         restart_dead=cfg.restart_dead_codes)
        self.decoder = nn.Sequential(
            nn.Conv2d(d, h, 3, 1, 1),
            ResidualStack(h, r, cfg.num_residual_layers),
            nn.ConvTranspose2d(h, h // 2, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(h // 2, 3, 4, 2, 1), nn.Sigmoid())
        # Companions are kept out of the module tree: the VQ-VAE checkpoint stays the VQ-VAE's alone.
        self._companions: dict[str, PixelCNNPrior] = {}

    # -- latent space ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous pre-quantisation map z_e (N, D, H/4, W/4): where edits and paths are taken."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Quantise z_e to its nearest codes, then decode."""
        return self.decode_codes(self.quantizer.indices(z))

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """(N, H/4, W/4) code indices of images: what extract_codes stores and the prior models."""
        return self.quantizer.indices(self.encode(x))

    def decode_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.lookup(indices).to(self.decoder[0].weight.dtype))

    def importance_samples(self, x: torch.Tensor, k: int, generator: torch.Generator,
                           with_log_ratio: bool = True) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """The likelihood draws of evaluation.likelihood: q(c|x) is a point mass on the encoder's
        codes, so one draw is exact and the list has one whatever k: the decoder mean given the
        quantised codes (N, 3, H, W) float32, and log P(codes) under the prior with attributes
        marginalised out, in nats (N,) (log q = 0), as in van den Oord et al. 2017, sec. 4.2.
        That costs one prior pass per training attribute combination, so only the
        ``MARGINAL_ROWS`` most frequent are summed (an upper bound on the NLL; on the default data
        32 of 192 combinations add 0.0014 bits/dim at a sixth of the cost). ``with_log_ratio=False``
        skips the prior (None) where only the decoder mean is needed."""
        codes = self.codes(x)
        log_prior = -self.prior.marginal_nll_nats(codes, MARGINAL_ROWS).float() if with_log_ratio else None
        return [(self.decode_codes(codes).float(), log_prior)]

    # -- prior ----------------------------------------------------------------------------------
    @property
    def prior(self) -> PixelCNNPrior:
        if "prior" not in self._companions:
            raise FacegenError(f"{self.family} has no fitted prior to sample from: run `dvc repro fit_prior`")
        return self._companions["prior"]

    def attach_prior(self, prior: PixelCNNPrior) -> None:
        if prior.num_codes != self.cfg.num_embeddings or prior.grid != (self.grid, self.grid):
            raise FacegenError(f"the prior models {prior.num_codes} codes on a {prior.grid} grid but this "
                               f"{self.family} has {self.cfg.num_embeddings} codes on {self.grid}x{self.grid}: "
                               "rerun `dvc repro fit_prior`")
        self._companions["prior"] = prior.to(self.decoder[0].weight.device).eval()

    @property
    def sample_attributes(self) -> tuple[str, ...]:
        """The conditional prior's attributes (what ``sample(..., attrs)`` uses); () without a prior."""
        return tuple(self._companions["prior"].attr_names) if "prior" in self._companions else ()

    @property
    def sampling_temperature(self) -> float:
        """``prior.temperature``: the PixelCNN's logits are divided by it before each code is drawn
        (benchmarks/bench_temperature.py scores it on validation faces; docs/defaults.md)."""
        return self.prior.cfg.temperature

    def sample(self, n: int, generator: torch.Generator, attrs: torch.Tensor | None = None) -> torch.Tensor:
        """Codes from the prior (conditioned on ``attrs`` if it is conditional), decoded."""
        with torch.inference_mode():
            return self.decode_codes(self.prior.sample_codes(n, generator, attrs))

    # -- training -------------------------------------------------------------------------------
    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = batch.images
        vq = self.quantizer(self.encode(x))
        recon = F.mse_loss(self.decoder(vq.quantized).float(), x.float())
        return {"loss": recon + vq.loss, "recon_mse": recon, "commitment": vq.commitment,
                "perplexity": vq.perplexity, "codes_used_frac": vq.used_frac}
