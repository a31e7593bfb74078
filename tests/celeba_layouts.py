"""Real CelebA's two packagings, written from a generated CelebA-format folder (tests only).

The synthetic generator writes the official format at the folder's top level; users have either the
torchvision layout or the Kaggle one. These copy the first ``n`` faces of a generated folder into
either layout, with the lists rewritten in that layout's format (no factors.csv: real CelebA has none).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from facegen.config import CELEBA_ATTRIBUTES


def _subset(faces: Path, table: pd.DataFrame, image_dir: Path, n: int) -> pd.DataFrame:
    """Copy the first ``n`` images into ``image_dir``; return their rows of the original lists."""
    image_dir.mkdir(parents=True)
    rows = table.iloc[:n]
    for name in rows["image_id"]:
        shutil.copy(faces / "img_align_celeba" / name, image_dir / name)
    return rows


def make_torchvision(faces: Path, table: pd.DataFrame, root: Path, n: int) -> pd.DataFrame:
    """root/celeba/{img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt} as torchvision has it."""
    rows = _subset(faces, table, root / "celeba" / "img_align_celeba", n)
    attr_lines = (faces / "list_attr_celeba.txt").read_text().splitlines()
    (root / "celeba" / "list_attr_celeba.txt").write_text("\n".join([str(n), *attr_lines[1:n + 2]]) + "\n")
    part_lines = (faces / "list_eval_partition.txt").read_text().splitlines()
    (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(part_lines[:n]) + "\n")
    return rows


def make_kaggle(faces: Path, table: pd.DataFrame, root: Path, n: int) -> pd.DataFrame:
    """root/img_align_celeba/img_align_celeba/ + list_attr_celeba.csv + list_eval_partition.csv (Kaggle)."""
    rows = _subset(faces, table, root / "img_align_celeba" / "img_align_celeba", n)
    attrs = rows[["image_id", *CELEBA_ATTRIBUTES]].copy()
    attrs[list(CELEBA_ATTRIBUTES)] = attrs[list(CELEBA_ATTRIBUTES)] * 2 - 1  # 1 / -1 as in the file
    attrs.to_csv(root / "list_attr_celeba.csv", index=False)
    partition = rows["split"].map({"train": 0, "val": 1, "test": 2})
    pd.DataFrame({"image_id": rows["image_id"], "partition": partition}).to_csv(
        root / "list_eval_partition.csv", index=False)
    assert (root / "list_attr_celeba.csv").read_text().startswith("image_id,5_o_Clock_Shadow,Arched_Eyebrows,")
    return rows
