"""What every analysis receives: the trained model, the data, where to write, and the settings.

Analyses are plain functions ``(ctx) -> dict[str, float]`` that write figures under
``ctx.out_dir`` and return flat metrics; evaluation runs the ones whose capability the family
declares, so no analysis ever branches on a family name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facegen.config import EvaluateConfig
from facegen.data.dataset import FaceSplit
from facegen.models.base import GenerativeModel
from facegen.runtime import Runtime


@dataclass
class EvalContext:
    model: GenerativeModel
    family: str
    train: FaceSplit
    test: FaceSplit
    cfg: EvaluateConfig
    rt: Runtime
    seed: int
    out_dir: Path
    classifier: Any = None  # trained attribute classifier (models/classifier) when available
    inception_reference: torch.Tensor | None = None  # (N, 2048) cached Inception features of the first test faces
    val: FaceSplit | None = None  # likelihood: the decoder's σ is fitted on validation faces
    data_source: str = "synthetic"  # params.data.source: identity metrics need real photos ("celeba")
    notes: list[str] = field(default_factory=list)  # human-readable remarks for the report
    # Run-dependent measurements (sampling speed): logged to MLflow and the log, never returned as
    # metrics, because metrics/<family>.json is a DVC output and must be a function of its inputs.
    timings: dict[str, float] = field(default_factory=dict)
    # What several analyses need and one computes (the edit set-up: attribute directions; the test
    # reconstructions, GAN inversions included; the face template of the identity analyses), kept so
    # the later ones reuse it; safe because each analysis draws from its own seeded generator.
    shared: dict[str, Any] = field(default_factory=dict)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh generator per analysis: adding an analysis never shifts another's random draws."""
        return torch.Generator().manual_seed(self.seed + offset)

    def val_images(self, n: int) -> torch.Tensor:
        """The first ``n`` validation images, a float batch on the device (likelihood σ calibration)."""
        split = self.val if self.val is not None else self.test
        idx = torch.arange(min(n, len(split)))
        return split.batch(idx, self.rt.device, self.rt.channels_last).images

    def test_images(self, n: int) -> torch.Tensor:
        """The first ``n`` test images, as a float batch on the device (same faces for every family)."""
        idx = torch.arange(min(n, len(self.test)))
        return self.test.batch(idx, self.rt.device, self.rt.channels_last).images
