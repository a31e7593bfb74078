"""Find and read a CelebA folder in any of the layouts people actually have on disk.

CelebA circulates in two packagings: the official / torchvision one (space-separated ``.txt`` lists)
and the Kaggle one (``.csv`` lists, images one folder deeper). The synthetic generator writes the
official format at the folder's top level. Readers normalise all three into one table so the rest
of the pipeline never knows which it got. Nothing is downloaded: a missing or partial dataset is one
DataError that says what was expected and where to get it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from facegen.errors import DataError

SPLIT_NAMES = {0: "train", 1: "val", 2: "test"}  # list_eval_partition values
_HOW_TO_GET = ("download CelebA (Align&Cropped images + attribute and partition lists) from "
               "mmlab.ie.cuhk.edu.hk/projects/CelebA.html or Kaggle 'jessicali9530/celeba-dataset', "
               "unpack it there and set data.root (nothing is downloaded automatically), "
               "or set data.source: synthetic")


@dataclass(frozen=True)
class CelebaLayout:
    """Where one CelebA copy keeps its images and lists, and which list format it uses."""

    image_dir: Path
    attr_file: Path
    partition_file: Path
    format: Literal["txt", "csv"]
    factors_file: Path | None = None  # ground-truth factors; only synthetic folders have them


def _candidates(root: Path) -> list[tuple[str, CelebaLayout]]:
    """The layouts to try, in order: the folder itself (as generated), torchvision, Kaggle."""
    tv = root / "celeba"
    return [
        ("CelebA txt", CelebaLayout(root / "img_align_celeba", root / "list_attr_celeba.txt",
                                    root / "list_eval_partition.txt", "txt")),
        ("torchvision", CelebaLayout(tv / "img_align_celeba", tv / "list_attr_celeba.txt",
                                     tv / "list_eval_partition.txt", "txt")),
        ("Kaggle", CelebaLayout(root / "img_align_celeba" / "img_align_celeba", root / "list_attr_celeba.csv",
                                root / "list_eval_partition.csv", "csv")),
    ]


def _has_images(image_dir: Path) -> bool:
    """True when the folder holds at least one JPEG (stops at the first: folders hold 200k files)."""
    with os.scandir(image_dir) as entries:
        return any(e.name.lower().endswith((".jpg", ".jpeg")) for e in entries)


def find_layout(root: Path) -> CelebaLayout:
    """Detect which CelebA layout ``root`` holds; DataError when none is complete."""
    root = Path(root)
    partial: list[tuple[int, str]] = []  # (number missing, description) of layouts half there
    for name, layout in _candidates(root):
        missing = [p for p in (layout.image_dir, layout.attr_file, layout.partition_file) if not p.exists()]
        if not missing and not _has_images(layout.image_dir):
            missing = [Path(f"{layout.image_dir}/*.jpg")]
        if not missing:
            factors = layout.attr_file.parent / "factors.csv"
            return CelebaLayout(layout.image_dir, layout.attr_file, layout.partition_file, layout.format,
                                factors if factors.is_file() else None)
        if len(missing) < 3:
            partial.append((len(missing), f" (partial {name} layout: missing {', '.join(map(str, missing))})"))
    closest = min(partial, default=(0, ""))[1]
    state = "holds no complete CelebA dataset" + closest if root.exists() else "does not exist"
    expected = "; ".join(
        f"({i}) {name}: {layout.image_dir.relative_to(root)}/*.jpg, {layout.attr_file.relative_to(root)}, "
        f"{layout.partition_file.relative_to(root)}"
        for i, (name, layout) in enumerate(_candidates(root), start=1))
    raise DataError(f"data.root {root} {state}: expected one of {expected}; {_HOW_TO_GET}")


def _read(path: Path, what: str, **kwargs: object) -> pd.DataFrame:
    """pandas.read_csv whose parse failures become a DataError naming the file."""
    try:
        return pd.read_csv(path, **kwargs)
    except ValueError as err:  # pandas' ParserError / EmptyDataError and UnicodeDecodeError included
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path} is not a valid CelebA {what} file ({first}): re-extract it from the archive") from None


def _read_attributes(layout: CelebaLayout) -> pd.DataFrame:
    if layout.format == "csv":  # header: image_id,5_o_Clock_Shadow,...
        table = _read(layout.attr_file, "attribute")
    else:  # line 1: count, line 2: names, then "000001.jpg -1  1 ..."
        with open(layout.attr_file) as f:
            f.readline()
            names = f.readline().split()
        table = _read(layout.attr_file, "attribute", sep=r"\s+", skiprows=2, header=None,
                      names=["image_id", *names])
    if table.columns[0] != "image_id" or table.shape[1] < 2:
        raise DataError(f"{layout.attr_file} does not start with an image_id column followed by attributes: "
                        "re-extract it from the archive")
    return _as_plus_minus_one(table, layout.attr_file)


def _as_plus_minus_one(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Attribute values as CelebA's 1/-1. Files re-saved with 0/1 (a common Kaggle/pandas export)
    are accepted when that reading is unambiguous: every value is 0 or 1 (a CelebA file never has 0).
    Anything else is refused naming the column and the values found."""
    values = table.iloc[:, 1:]
    if values.isin([1, -1]).all().all():
        return table
    if values.isin([0, 1]).all().all():
        return pd.concat([table.iloc[:, :1], values.replace(0, -1)], axis=1)
    bad = next(c for c in values.columns if not values[c].isin([1, -1]).all())
    found: list[object] = sorted(pd.unique(values[bad].dropna()).tolist(), key=str)[:6]
    if values[bad].isna().any():
        found.append("empty cells")
    raise DataError(f"{path} column {bad} has values {found}: expected CelebA's 1/-1 (or 0/1 throughout the "
                    "file); fix or replace the file so that every attribute is 1/-1, e.g. the original "
                    "list_attr_celeba from the CelebA archive")


def _read_partition(layout: CelebaLayout) -> pd.DataFrame:
    if layout.format == "csv":  # header: image_id,partition
        table = _read(layout.partition_file, "partition")
    else:
        table = _read(layout.partition_file, "partition", sep=r"\s+", header=None, names=["image_id", "partition"])
    if list(table.columns) != ["image_id", "partition"] or not table["partition"].isin(list(SPLIT_NAMES)).all():
        raise DataError(f"{layout.partition_file} must list 'image_id partition' rows with partition 0/1/2: "
                        "re-extract it from the archive")
    return table


def read_table(layout: CelebaLayout, attributes: Sequence[str] = ()) -> pd.DataFrame:
    """One row per image in partition-file order: image_id, split, then every attribute as int8 0/1.

    ``attributes`` are the names the caller will use; any the file lacks is a DataError listing the
    available ones. Images listed but absent from the image folder (a partial extraction) are a
    DataError too, raised here rather than as thousands of "corrupt" images later.
    """
    attrs = _read_attributes(layout)
    names = list(attrs.columns[1:])
    unknown = [a for a in attributes if a not in names]
    if unknown:
        raise DataError(f"attributes {unknown} are not in {layout.attr_file}; available: {', '.join(names)}")
    part = _read_partition(layout)
    try:
        table = part.merge(attrs, on="image_id", how="left", validate="one_to_one", indicator=True)
    except pd.errors.MergeError:
        raise DataError(f"{layout.partition_file} or {layout.attr_file} lists an image twice: "
                        "re-extract them from the archive") from None
    unlisted = table.loc[table["_merge"] != "both", "image_id"]
    if len(unlisted) or len(attrs) != len(part):
        raise DataError(f"{layout.partition_file} and {layout.attr_file} list different images ({len(part)} vs "
                        f"{len(attrs)} rows, e.g. {list(unlisted[:3])}): use lists from one CelebA copy")
    present = set(os.listdir(layout.image_dir))
    absent = table.loc[~table["image_id"].isin(present), "image_id"]
    if len(absent):
        raise DataError(f"{layout.image_dir} is partial: {len(absent)} of {len(table)} listed images are missing "
                        f"(e.g. {', '.join(absent[:3])}); extract the whole img_align_celeba archive there")
    out = pd.DataFrame({"image_id": table["image_id"].astype(str),
                        "split": table["partition"].map(SPLIT_NAMES)})
    flags = (table[names].to_numpy() > 0).astype(np.int8)
    return pd.concat([out, pd.DataFrame(flags, columns=names)], axis=1)
