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
that ``fit_prior`` trains on this model's codes; ``load_companions`` attaches it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from facegen.config import VQVAEConfig
from facegen.errors import FacegenError
from facegen.models.base import EDIT, ENCODE, RECONSTRUCT, Batch, GenerativeModel, SingleLossTraining
from facegen.models.pixelcnn import PixelCNNPrior
from facegen.models.quantize import VectorQuantizer
from facegen.runtime import eval_mode

if TYPE_CHECKING:
    from facegen.data.dataset import FaceSplit
    from facegen.evaluation.context import EvalContext
    from facegen.runtime import Runtime

PRIOR_DIR = "pixelcnn"  # models/<PRIOR_DIR>/{model.pt,metrics.json}, written by fit_prior


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


class VQVAE(SingleLossTraining, GenerativeModel):
    capabilities: ClassVar[frozenset[str]] = frozenset({ENCODE, RECONSTRUCT, EDIT})

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
        self._prior_metrics: dict[str, float] = {}

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

    # -- prior ----------------------------------------------------------------------------------
    @property
    def prior(self) -> PixelCNNPrior:
        if "prior" not in self._companions:
            raise FacegenError(f"{self.family} has no fitted prior to sample from: run `dvc repro fit_prior` "
                               f"(it writes models/{PRIOR_DIR}/model.pt)")
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

    def load_companions(self, models_root: Path) -> None:
        from facegen.training.prior import load_prior  # training imports models: import at call time

        directory = models_root / PRIOR_DIR
        if (directory / "model.pt").is_file():
            self.attach_prior(load_prior(directory / "model.pt", self.decoder[0].weight.device))
        if (directory / "metrics.json").is_file():
            self._prior_metrics = json.loads((directory / "metrics.json").read_text())

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

    # -- evaluation -----------------------------------------------------------------------------
    def family_analyses(self, ctx: EvalContext) -> dict[str, float]:
        """Codebook usage on the test split, the prior's test NLL, and attribute-conditioned samples."""
        counts, stats = usage_stats(split_codes(self, ctx.test, ctx.rt, ctx.cfg.batch_size), self.cfg.num_embeddings)
        plot_code_usage(counts, ctx.out_dir / "codebook_usage.png",
                        f"{self.family} test code usage: {stats['codes_used']:.0f}/{self.cfg.num_embeddings} codes, "
                        f"perplexity {stats['perplexity']:.1f}")
        metrics = {**stats, **{f"prior_{k}": float(v) for k, v in self._prior_metrics.items()}}
        if "prior" not in self._companions:
            ctx.notes.append("No fitted prior: VQ-VAE conditional samples skipped.")
        elif not self.prior.attr_names:
            ctx.notes.append("The prior is unconditional (prior.conditional: false): no conditional samples.")
        else:
            metrics.update(self._conditional_samples(ctx))
        return metrics

    def _conditional_samples(self, ctx: EvalContext) -> dict[str, float]:
        """A row with every attribute off, then one row per attribute switched on alone; every row
        uses the same uniforms, column by column.

        Sharing the uniforms couples the draws, so a column changes where the attribute changes the
        prior's conditionals and stays alike elsewhere."""
        from facegen.reporting.grids import save_labelled_rows

        names, cols = self.prior.attr_names, ctx.cfg.grid_size
        uniforms = torch.rand(cols, *self.prior.grid, generator=ctx.generator(11)).repeat(len(names) + 1, 1, 1)
        attrs = torch.cat([torch.zeros(1, len(names)), torch.eye(len(names))]).repeat_interleave(cols, 0)
        with torch.inference_mode(), ctx.rt.autocast():
            t0 = time.perf_counter()
            codes = self.prior.sample_from(uniforms, attrs)
            seconds = time.perf_counter() - t0
            images = self.decode_codes(codes).float()
        save_labelled_rows(list(images.split(cols)), ctx.out_dir / "conditional_samples.png",
                           row_labels=["all off", *(f"{n} on" for n in names)],
                           title=f"{self.family}: prior samples with one attribute on (same noise per column)")
        ctx.timings["prior_samples_per_s"] = len(codes) / seconds  # MLflow only: not a DVC metric
        return {}


# -- code statistics (extract_codes and evaluation) ------------------------------------------------
def split_codes(model: VQVAE, split: FaceSplit, rt: Runtime, batch_size: int) -> torch.Tensor:
    """(N, H/4, W/4) code indices of a whole split, on the CPU."""
    with eval_mode(model), rt.autocast():
        return torch.cat([model.codes(b.images).cpu()
                          for b in split.batches(batch_size, rt.device, channels_last=rt.channels_last)])


def usage_stats(codes: torch.Tensor, num_codes: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-code counts, perplexity (exp entropy of code frequencies) and how many codes occur."""
    counts = torch.bincount(codes.flatten().long(), minlength=num_codes).double()
    p = counts[counts > 0] / counts.sum()
    used = int((counts > 0).sum())
    return counts, {"perplexity": float(torch.exp(-(p * p.log()).sum())), "codes_used": float(used),
                    "codes_used_frac": used / num_codes}


def plot_code_usage(counts: torch.Tensor, path: Path, title: str) -> Path:
    """Code frequencies sorted from most to least used (log scale): collapse shows as a cliff."""
    from facegen.reporting.grids import plt, save_figure  # matplotlib only where a figure is drawn

    freq = (counts / counts.sum()).sort(descending=True).values
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(freq)), freq.where(freq > 0, float("nan")).numpy(), width=1.0)
    ax.set_yscale("log")
    ax.set_xlabel("code rank")
    ax.set_ylabel("frequency")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
