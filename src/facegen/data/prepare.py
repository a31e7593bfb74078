"""The ``prepare`` stage: decode, crop and resize every image once into uint8 arrays.

Training then reads tensors, never JPEGs. The transform is torchvision's ``Resize(size)`` (short
side, bilinear, antialiased: what PIL's resize does) then ``CenterCrop(size)``, reproduced with PIL
so that prepare needs no torch. Decoding is ``facegen.data.images.load_image``, the one loader
shared with the CLI (EXIF orientation, 16-bit, alpha, decompression bombs). ``Image.draft`` first
lets libjpeg decode at 1/2, 1/4 or 1/8 scale in the DCT domain, which is most of the speed-up; it
never decodes below the resize target.

Output (``out_dir``): ``{train,val,test}.npy`` uint8 (N, S, S, 3) in partition-file order,
``attrs.csv`` (image_id, split, configured attributes as 0/1; same row order: train, val, test),
``factors.csv`` when the source has ground-truth factors, and ``summary.json`` (counts only: the
folder is a function of the data params, so its DVC hash changes only when they do). It is built
in a sibling temp folder and renamed into place, so a failure never leaves a half-written cache.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from facegen import artifacts
from facegen.config import DataConfig
from facegen.data import TaskMap, task_map
from facegen.data.celeba import SPLIT_NAMES, find_layout, read_table
# The one image loader (EXIF, 16-bit, alpha, bombs), shared with the facegen command; re-exported.
from facegen.data.images import UNREADABLE, load_image  # noqa: F401
from facegen.data.synthetic import generate_celeba_folder
from facegen.errors import DataError

log = logging.getLogger(__name__)
SPLITS = tuple(SPLIT_NAMES.values())
CHUNK = 256  # images per worker task: large enough to amortise IPC, small enough for a smooth bar


@dataclass(frozen=True)
class PrepareSummary:
    """What prepare wrote: images per split, how many were skipped as corrupt, and how fast."""

    counts: dict[str, int]
    corrupt: int
    seconds: float
    images_per_second: float

    def content(self) -> dict[str, object]:
        """What ``summary.json`` holds: only what the inputs determine (counts), never timings.

        ``data/prepared`` is a DVC output: a run-dependent byte in it would give it a new hash on
        every run and make every downstream stage stale. Timings go to MLflow and the log.
        """
        return {"counts": self.counts, "corrupt": self.corrupt}


def _decode_chunk(task: tuple[list[str], int]) -> tuple[np.ndarray, list[int]]:
    """Worker task: decode paths -> (stacked good images, positions of unreadable ones)."""
    paths, size = task
    out = np.empty((len(paths), size, size, 3), np.uint8)
    bad: list[int] = []
    for i, path in enumerate(paths):
        try:
            out[i - len(bad)] = load_image(path, size)
        except UNREADABLE:
            bad.append(i)
    return out[:len(paths) - len(bad)], bad


def _limit(table: pd.DataFrame, max_images: int) -> pd.DataFrame:
    """The first rows of each split, ``max_images`` in all, in the file's split proportions.

    Taking the first N rows of the file directly keeps proportions only for interleaved lists
    (the synthetic one); real CelebA lists its splits in contiguous blocks, so that would be all
    train. Per-split prefixes give the same rows for the synthetic list and a usable subset for both.
    """
    if not max_images or max_images >= len(table):
        return table
    sizes = table["split"].value_counts().reindex(SPLITS, fill_value=0).to_numpy()
    share = sizes * max_images / len(table)
    keep = np.floor(share).astype(int)
    keep[np.argsort(keep - share)[:max_images - keep.sum()]] += 1  # largest remainders
    rank = table.groupby("split", sort=False).cumcount()
    return table[rank < table["split"].map(dict(zip(SPLITS, keep)))]


def _decode_split(run: TaskMap, paths: list[str], size: int, npy: Path, bar: tqdm, allowed: int) -> np.ndarray:
    """Decode one split into ``npy`` (readable images only, in order); return the keep-mask.

    Stops early once more than ``allowed`` images are unreadable: the caller then fails, and a
    wholly broken dataset fails fast instead of after decoding 200k files.
    """
    images = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
    keep = np.ones(len(paths), bool)
    filled = 0
    tasks = [(paths[i:i + CHUNK], size) for i in range(0, len(paths), CHUNK)]
    for start, (good, bad) in zip(range(0, len(paths), CHUNK), run(_decode_chunk, tasks)):
        images[filled:filled + len(good)] = good
        filled += len(good)
        keep[[start + i for i in bad]] = False
        bar.update(len(good) + len(bad))
        if len(paths) - keep.sum() > allowed:
            break
    if filled < len(paths):  # skipped images: rewrite with the true row count
        artifacts.write_npy(npy, images[:filled])
    return keep


def prepare(cfg: DataConfig, seed: int, out_dir: Path) -> PrepareSummary:
    """Build the uint8 cache for ``cfg`` in ``out_dir``, replacing it whole; see the module doc.

    For the synthetic source the CelebA-format folder is generated (or reused) first; the
    summary's ``seconds`` and ``images_per_second`` cover the decoding only.
    """
    out_dir = Path(out_dir)
    root = Path(cfg.root)
    if cfg.source == "synthetic":
        generate_celeba_folder(root, cfg.synthetic, seed, cfg.workers)
    start = time.perf_counter()
    layout = find_layout(root)
    table = _limit(read_table(layout, cfg.attributes), cfg.max_images)
    table = pd.concat([table[table["split"] == s] for s in SPLITS], ignore_index=True)
    allowed = int(cfg.max_corrupt_fraction * len(table))

    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        keep = np.ones(len(table), bool)
        with task_map(cfg.workers) as run, tqdm(total=len(table), desc="prepare", unit="img") as bar:
            for split in SPLITS:
                rows = np.flatnonzero(table["split"].to_numpy() == split)
                paths = [str(layout.image_dir / name) for name in table["image_id"].iloc[rows]]
                keep[rows] = _decode_split(run, paths, cfg.image_size, tmp / f"{split}.npy", bar,
                                           allowed - int((~keep).sum()))
                if (~keep).sum() > allowed:
                    break
        corrupt = int((~keep).sum())
        examples = ", ".join(table["image_id"][~keep][:5])
        if corrupt > allowed:
            raise DataError(f"more than {cfg.max_corrupt_fraction:.1%} of the {len(table)} images in "
                            f"{layout.image_dir} are unreadable (e.g. {examples}): re-extract the archive, "
                            "or raise data.max_corrupt_fraction to skip them")
        if corrupt:
            log.warning("skipped %d unreadable image(s) in %s: %s", corrupt, layout.image_dir, examples)
        kept = table[keep]
        kept[["image_id", "split", *cfg.attributes]].to_csv(tmp / "attrs.csv", index=False)
        if layout.factors_file is not None:
            factors = pd.read_csv(layout.factors_file, dtype={"image_id": str})
            factors = kept[["image_id", "split"]].merge(factors, on="image_id", how="left")
            factors.to_csv(tmp / "factors.csv", index=False, float_format="%.6f")
        seconds = time.perf_counter() - start
        counts = kept["split"].value_counts()
        summary = PrepareSummary({s: int(counts.get(s, 0)) for s in SPLITS}, corrupt, round(seconds, 3),
                                 round(len(table) / seconds, 1))
        (tmp / artifacts.PREPARE_SUMMARY.name).write_text(json.dumps(summary.content(), indent=2, sort_keys=True) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is swapped out by rename, then deleted."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        new.rename(target)
        shutil.rmtree(old)
    else:
        new.rename(target)
