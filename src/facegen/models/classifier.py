"""The pipeline's one attribute classifier: a small multi-label CNN over ``data.attributes``.

Two jobs, so every family is judged by the same instrument:
* ``predict_proba`` scores attribute edits (did the target attribute flip, did the others stay)
  and labels GAN samples when attribute boundaries are fitted in z-space;
* ``features`` (the pooled penultimate activations) is the feature space of the distribution
  metrics (``fid_facegen``, ``kid_facegen``, precision/recall/density/coverage). Inception
  features would need a download; a classifier trained on the same faces is offline and sensitive
  to exactly the attributes this project cares about. Its numbers are therefore *not* comparable
  with published Inception FIDs, and are never named as such.

It is not a generative model, but it implements the few methods the one training loop calls
(``optimizers``, ``train_step``, ``val_step``, ``epoch_end``, ``family``), so it trains through
``training.loop.fit`` like every family.

Inference methods run in fp32 whatever the caller's autocast: metrics then do not depend on
whether the CPU picked bf16, which keeps the CI metric gate's tolerances tight.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from facegen.config import ClassifierConfig
from facegen.data.dataset import Batch
from facegen.models.base import SingleLossTraining

STAGES = 4  # stride-2 conv stages: 64 px -> 4 px
INFERENCE_CHUNK = 256  # images per forward in predict_proba/features: bounds memory for large batches


class AttributeClassifier(SingleLossTraining, nn.Module):
    """Conv(3x3, stride 2)-BN-ReLU x 4 (widths w, 2w, 4w, 8w), global average pool, linear head."""

    family = "classifier"  # the name the training loop shows in its progress bar

    def __init__(self, attributes: Sequence[str], cfg: ClassifierConfig, image_size: int) -> None:
        super().__init__()
        if image_size < 2 ** STAGES:
            raise ValueError(f"the classifier needs images of at least {2 ** STAGES} px, got {image_size}")
        self.attributes = tuple(attributes)
        self.cfg = cfg
        self.image_size = image_size
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(STAGES):
            c_out = cfg.width * 2 ** i
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, len(self.attributes))
        self.feature_dim = c_in

    # -- inference (the interface evaluation and the GAN boundaries use) ----------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (N, A) for images in [0, 1]."""
        return self.head(self.body(images * 2 - 1))

    def _infer(self, images: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        device = next(self.parameters()).device
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
            return torch.cat([fn(chunk.to(device, torch.float32)) for chunk in images.split(INFERENCE_CHUNK)])

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """P(attribute present) (N, A), columns in ``self.attributes`` order."""
        return torch.sigmoid(self._infer(images, self))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate activations (N, feature_dim): the pipeline's feature space."""
        return self._infer(images, lambda x: self.body(x * 2 - 1))

    # -- the surface training.loop.fit calls ---------------------------------------------------
    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self(batch.images).float()
        loss = F.binary_cross_entropy_with_logits(logits, batch.attrs)
        acc = ((logits > 0).float() == batch.attrs).float().mean()
        return {"loss": loss, "acc": acc}
