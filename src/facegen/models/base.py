"""The one small interface every trainable family implements.

The training loop, checkpointing, tracking, evaluation and report only talk to this surface, so
none of them branches on a family name. A family declares what it can do in ``capabilities``
instead of faking methods it lacks; evaluation skips what is not declared and says so.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

# Capability names, checked by evaluation / CLI before calling the matching method.
ENCODE = "encode"            # encode(x) -> latent code usable by decode (means for VAEs)
RECONSTRUCT = "reconstruct"  # reconstruct(x) -> images
EDIT = "edit"                # latent arithmetic (attribute vectors, interpolation) is meaningful
TRAVERSE = "traverse"        # per-dimension latent traversals are meaningful (continuous factorised z)
LIKELIHOOD = "likelihood"    # importance_samples(x, k, generator) is defined (evaluation/likelihood.py)
QUANTIZE = "quantize"        # codes(x) -> (N, h, w) discrete code maps over cfg.num_embeddings codes
ADVERSARIAL = "adversarial"  # critic(x) -> (N,) the discriminator's P(real) for images in [0, 1]


class SingleLossTraining:
    """The training surface of a model fitted by one Adam on one scalar loss.

    VAE, VQ-VAE, the PixelCNN prior and the attribute classifier all train this way (only the GAN
    does not), so they implement ``losses(batch)`` and inherit the rest: list this class before
    ``nn.Module``/``GenerativeModel`` in the bases so its methods win. ``losses`` must return a
    ``"loss"`` entry to minimise; every other entry is only logged.
    """

    cfg: Any  # needs ``cfg.train.lr``

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": torch.optim.Adam(self.parameters(), lr=self.cfg.train.lr)}  # type: ignore[attr-defined]

    def train_step(self, batch: Batch, opts: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        opt = opts["adam"]
        opt.zero_grad(set_to_none=True)
        out = self.losses(batch)
        out["loss"].backward()
        opt.step()
        return {k: v.detach() for k, v in out.items()}

    def val_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.losses(batch)

    def epoch_end(self, epoch: int) -> dict[str, torch.Tensor]:
        return {}


class GenerativeModel(nn.Module, ABC):
    """Base class for VAE, β-VAE, VQ-VAE and DCGAN systems."""

    capabilities: ClassVar[frozenset[str]] = frozenset()
    # How attribute directions are found for EDIT: "mean_difference" of encoded real faces with and
    # without the attribute (needs an amortised encoder), or "classifier_boundary": a linear boundary
    # fitted on prior samples labelled by the attribute classifier (InterFaceGAN, for GANs).
    edit_directions: ClassVar[str] = "mean_difference"
    # "encoder" or "inversion" (latent optimisation): the report labels GAN reconstructions as such.
    reconstruction_method: ClassVar[str] = "encoder"

    def __init__(self, family: str, cfg: Any, image_size: int) -> None:
        super().__init__()
        self.family = family
        self.cfg = cfg
        self.image_size = image_size

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers by name; the checkpoint stores each one's state under that name."""

    @abstractmethod
    def train_step(self, batch: Batch, opts: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One optimisation step (a GAN does D and G here). Returns detached scalar tensors.

        Returning tensors, not floats, lets the loop average them without a host sync per step.
        """

    def val_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Validation losses for one batch (under no_grad); families without one return {}."""
        return {}

    def epoch_end(self, epoch: int) -> dict[str, torch.Tensor]:
        """Hook after each epoch; may return named image batches in [0, 1] to log (e.g. fixed-noise grids)."""
        return {}

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator, attrs: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` new images in [0, 1]. ``attrs`` conditions families that support it; others ignore it."""

    @property
    def sample_attributes(self) -> tuple[str, ...]:
        """Attribute names ``sample(..., attrs)`` conditions on, in column order; () = it ignores attrs."""
        return ()

    @property
    def sampling_temperature(self) -> float:
        """The temperature ``sample`` draws at, which the report states beside realism: 1 = the prior as
        trained (the VAEs' and the GAN's N(0, I); no truncation trick)."""
        return 1.0

    def latent_prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``n`` latents from the prior that ``decode`` expects (start points for GAN-style edits)."""
        raise NotImplementedError(f"{self.family} has no continuous latent prior")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.family} declares no '{ENCODE}' capability")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.family} has no decoder")

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def decoder_log_scale(self) -> torch.Tensor | None:
        """log σ of a Gaussian decoder p(x|z) trained as a likelihood, broadcastable to (N, C, H, W);
        None where training fixed no calibrated σ (evaluation then fits one on validation)."""
        return None

