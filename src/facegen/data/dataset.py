"""In-memory tensor dataset over prepare's uint8 cache.

prepare decodes JPEGs once; training then indexes a uint8 NHWC tensor and converts one batch at a
time. ``permute(0, 3, 1, 2)`` of an NHWC tensor *is* a channels_last NCHW tensor, so the batch is
already in the memory format the convs prefer, with no copy. No DataLoader workers: the whole
default set is ~150 MB and a gather + cast per batch costs far less than worker IPC.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from facegen.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass
class Batch:
    """A training batch: images in [0, 1] (N, 3, H, W) and binary attributes (N, A) as float."""

    images: torch.Tensor
    attrs: torch.Tensor


@dataclass
class FaceSplit:
    """One split: uint8 images (N, H, W, 3), attributes (N, A) float 0/1, optional factors (N, F)."""

    images: torch.Tensor
    attrs: torch.Tensor
    attr_names: tuple[str, ...]
    factors: torch.Tensor | None = None
    factor_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, idx: torch.Tensor, device: torch.device, channels_last: bool = True) -> Batch:
        x = self.images[idx].to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        if not channels_last:
            x = x.contiguous()
        return Batch(images=x, attrs=self.attrs[idx].to(device))

    def batches(self, batch_size: int, device: torch.device, *, shuffle: bool = False,
                generator: torch.Generator | None = None, channels_last: bool = True,
                drop_last: bool = False, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """Iterate over batches; with ``world_size > 1`` each rank sees a disjoint shard (DDP)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        if world_size > 1:
            order = order[: n - n % world_size][rank::world_size]
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield self.batch(order[start:start + batch_size], device, channels_last)

    def num_batches(self, batch_size: int, drop_last: bool = False, world_size: int = 1) -> int:
        n = len(self) // world_size if world_size > 1 else len(self)
        return n // batch_size if drop_last else -(-n // batch_size)


def load_split(prepared: Path, split: str, attributes: tuple[str, ...]) -> FaceSplit:
    """Load one prepared split; errors name the stage to run when files are missing."""
    npy = prepared / f"{split}.npy"
    attrs_csv = prepared / "attrs.csv"
    if not npy.is_file() or not attrs_csv.is_file():
        raise DataError(f"{npy} or {attrs_csv} missing: run `dvc repro prepare` first")
    images = torch.from_numpy(np.load(npy))
    table = pd.read_csv(attrs_csv)
    table = table[table["split"] == split]
    missing = [a for a in attributes if a not in table.columns]
    if missing:
        raise DataError(f"{attrs_csv} lacks attributes {missing}: rerun `dvc repro prepare` after changing data.attributes")
    if len(table) != images.shape[0]:
        raise DataError(f"{attrs_csv} has {len(table)} {split} rows but {npy} has {images.shape[0]} images: rerun prepare")
    attrs = torch.from_numpy(table[list(attributes)].to_numpy(np.float32, copy=True))
    factors, factor_names = None, ()
    factors_csv = prepared / "factors.csv"
    if factors_csv.is_file():
        ft = pd.read_csv(factors_csv)
        ft = ft[ft["split"] == split].drop(columns=["image_id", "split"])
        factors, factor_names = torch.from_numpy(ft.to_numpy(np.float32, copy=True)), tuple(ft.columns)
    return FaceSplit(images, attrs, tuple(attributes), factors, factor_names)
