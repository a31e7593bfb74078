"""VQ-VAE code maps as a dataset, so the prior trains through the same loop as every family.

``extract_codes`` writes ``data/codes/{train,val,test}.npy`` (int16 (N, H, W) code indices) next to
a copy of prepare's ``attrs.csv``: the same layout as ``data/prepared``, so loading reuses
``load_split``'s checks. ``CodeSplit`` is a ``FaceSplit`` whose "images" are code maps; only
``batch`` differs (int64 codes instead of float pixels), so shuffling, sharding and batch counts
are FaceSplit's own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facegen.artifacts import write_npy
from facegen.data.dataset import Batch, FaceSplit, load_split
from facegen.errors import DataError


@dataclass
class CodeSplit(FaceSplit):
    """``images`` holds int16 code maps (N, H, W); batches carry them as int64 in ``Batch.images``."""

    def batch(self, idx: torch.Tensor, device: torch.device, channels_last: bool = True) -> Batch:
        return Batch(images=self._rows(self.images, idx, device).long(), attrs=self._rows(self.attrs, idx, device))

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.images.shape[1:])


def save_codes(codes_dir: Path, split: str, codes: np.ndarray) -> Path:
    """Write one split's code maps atomically (a killed run never leaves a half-written array)."""
    return write_npy(codes_dir / f"{split}.npy", codes.astype(np.int16))


def load_codes(codes_dir: Path, split: str, attributes: tuple[str, ...]) -> CodeSplit:
    if not (codes_dir / f"{split}.npy").is_file() or not (codes_dir / "attrs.csv").is_file():
        raise DataError(f"{codes_dir}/{split}.npy or attrs.csv missing: run `dvc repro extract_codes` first")
    faces = load_split(codes_dir, split, attributes)
    return CodeSplit(faces.images, faces.attrs, faces.attr_names)
