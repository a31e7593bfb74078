"""Tensor dataset over prepare's uint8 cache, memory-mapped.

prepare decodes JPEGs once; training then indexes a uint8 NHWC tensor and converts one batch at a
time. ``permute(0, 3, 1, 2)`` of an NHWC tensor *is* a channels_last NCHW tensor, so the batch is
already in the memory format the convs prefer, with no copy. No DataLoader workers: a gather + cast
per batch costs far less than worker IPC.

Memory does not grow with the dataset. ``load_split`` maps the ``.npy`` file instead of reading it
(full CelebA at 128 px is 8 GB of training faces): a batch reads only its own rows, the pages are the
kernel's page cache (evictable, and shared by every torchrun process on the machine) rather than a
private copy per process. On CUDA, ``on_device`` copies a split to the device once, still uint8, when
it fits, and ``batches`` shuffles it there; otherwise each batch is gathered on the host into pinned
memory and copied asynchronously, so the host never waits for the copy.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TypeVar

import numpy as np
import pandas as pd
import torch

from facegen.errors import DataError
from facegen.runtime import to_device

SPLITS = ("train", "val", "test")
# Share of the device's free memory a split may take when copied there (the rest is for training).
DEVICE_DATA_FRACTION = 0.5
COPY_CHUNK_BYTES = 256 * 2**20  # host -> device copy of a split in pieces of this size
log = logging.getLogger(__name__)
S = TypeVar("S", bound="FaceSplit")


def fits_on_device(nbytes: int, free_bytes: int) -> bool:
    """Whether a split of ``nbytes`` should live on a device with ``free_bytes`` free: at most
    :data:`DEVICE_DATA_FRACTION` of it, so training keeps the rest (full CelebA's 162,770 training
    faces: 1.9 GiB at 64 px, 7.5 GiB at 128 px, so on the device from 3.7 / 14.9 GiB free)."""
    return nbytes <= DEVICE_DATA_FRACTION * free_bytes


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

    def _rows(self, t: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Rows ``idx`` of ``t`` (this split's images or attributes) on ``device``."""
        return to_device(t[to_device(idx, t.device)], device)

    def batch(self, idx: torch.Tensor, device: torch.device, channels_last: bool = True) -> Batch:
        x = self._rows(self.images, idx, device).permute(0, 3, 1, 2).float().div_(255)
        if not channels_last:
            x = x.contiguous()
        return Batch(images=x, attrs=self._rows(self.attrs, idx, device))

    def on_device(self: S, device: torch.device) -> S:
        """This split with images (uint8, as stored) and attributes copied to CUDA ``device`` once,
        when they fit (:func:`fits_on_device`); otherwise, or on the CPU, the split itself.

        The copy goes in :data:`COPY_CHUNK_BYTES` pieces straight from the memory map, so the host
        never holds a second copy of the split.
        """
        if device.type != "cuda" or self.images.device == device:
            return self
        nbytes = self.images.numel() * self.images.element_size()
        free, _ = torch.cuda.mem_get_info(device)
        if not fits_on_device(nbytes, free):
            log.info("split of %.1f GB stays on the host (%.1f GB free on %s): batches are copied as needed",
                     nbytes / 2**30, free / 2**30, device)
            return self
        images = torch.empty(self.images.shape, dtype=self.images.dtype, device=device)
        rows = max(1, COPY_CHUNK_BYTES * len(self) // max(1, nbytes))
        for start in range(0, len(self), rows):
            images[start:start + rows].copy_(self.images[start:start + rows])
        factors = self.factors.to(device) if self.factors is not None else None
        return dataclasses.replace(self, images=images, attrs=self.attrs.to(device), factors=factors)

    def batches(self, batch_size: int, device: torch.device, *, shuffle: bool = False,
                generator: torch.Generator | None = None, channels_last: bool = True,
                drop_last: bool = False, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """Iterate over batches of ``batch_size`` (per rank). With ``world_size > 1`` step k's global
        batch (``batch_size * world_size`` images) is the single-process batch k, and rank ``rank``
        takes its ``rank``-th contiguous slice, so the ranks' slices in rank order are that batch.

        The permutation is drawn on the host from ``generator`` (the same order on any device, and
        resumable), then moved once per epoch to where the images are, which gather there.
        """
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        if world_size > 1:
            order = order[: n - n % world_size]
            # A short last global batch still splits evenly: its length is a multiple of world_size.
            order = torch.cat([chunk.view(world_size, -1)[rank] for chunk in order.split(batch_size * world_size)])
        order = to_device(order, self.images.device)
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield self.batch(order[start:start + batch_size], device, channels_last)

    def num_batches(self, batch_size: int, drop_last: bool = False, world_size: int = 1) -> int:
        n = len(self) // world_size if world_size > 1 else len(self)
        return n // batch_size if drop_last else -(-n // batch_size)


def load_split(prepared: Path, split: str, attributes: tuple[str, ...]) -> FaceSplit:
    """Load one prepared split, its images memory-mapped; errors name the stage to run when files are missing."""
    npy = prepared / f"{split}.npy"
    attrs_csv = prepared / "attrs.csv"
    if not npy.is_file() or not attrs_csv.is_file():
        raise DataError(f"{npy} or {attrs_csv} missing: run `dvc repro prepare` first")
    # Copy-on-write mapping: read like mmap_mode="r" (pages shared with the page cache), but an
    # in-place write can neither crash on a read-only page nor reach the DVC-tracked file.
    images = torch.from_numpy(np.load(npy, mmap_mode="c"))
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
