"""Image grids: plain PNG grids (numpy tiling) and labelled figures (matplotlib).

Plain grids keep full resolution and are cheap; labelled figures are used where a reader needs to
know what a row or column means (edit scale, latent dimension, family name).
"""
from __future__ import annotations

import textwrap

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: stages and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from facegen.artifacts import write_figure, write_image  # noqa: E402


def save_figure(fig: plt.Figure, path: Path, dpi: int = 80) -> Path:
    """Lay out, write atomically (creating the folder) and close a figure: open figures are never leaked."""
    try:
        fig.tight_layout()
        return write_figure(fig, path, dpi=dpi)
    finally:
        plt.close(fig)


def grid_array(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> uint8 grid of ``min(nrow, N)`` columns, white borders of ``padding`` px.

    The layout of ``torchvision.utils.make_grid(..., pad_value=1)`` (cells at ``pad + k (size + pad)``;
    empty trailing cells white). Tiled here because torchvision is the only thing facegen would use
    it for, and its PyPI wheel is a CUDA build that does not import beside the CPU torch wheel the
    install takes (a CUDA torch + torchvision venv is ~5 GB more, and CI ran out of disk on it).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (N, 3, H, W) images, got shape {tuple(images.shape)}")
    cells = (images.detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    n, h, w, _ = cells.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, 3), 255, dtype=np.uint8)
    for k, cell in enumerate(cells):
        top, left = padding + (k // cols) * (h + padding), padding + (k % cols) * (w + padding)
        grid[top:top + h, left:left + w] = cell
    return grid


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> Path:
    from PIL import Image

    return write_image(path, Image.fromarray(grid_array(images, nrow)))


def save_strip(images: torch.Tensor, path: Path) -> Path:
    """(N, 3, H, W) in [0, 1] -> one unpadded row of N images, as a lossless 8-bit PNG."""
    from PIL import Image

    return write_image(path, Image.fromarray(grid_array(images, nrow=len(images), padding=0)))


def load_strip(path: Path) -> torch.Tensor:
    """The images of a :func:`save_strip` PNG, (N, 3, H, H) float in [0, 1] (square images)."""
    from PIL import Image

    row = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255  # np.array: writable
    size = row.shape[1]
    return torch.stack(row.split(size, dim=2))


def save_labelled_rows(rows: Sequence[torch.Tensor], path: Path, *, row_labels: Sequence[str],
                       col_labels: Sequence[str] | None = None, title: str = "") -> Path:
    """One image row per entry of ``rows`` (each (K, 3, H, W) in [0, 1]), labelled on the left and on top.

    Each row is drawn as one image strip in one axes (a short row is padded with white cells):
    matplotlib's layout cost grows with the number of axes, and one axes per cell made these
    figures ~80 % of an evaluate stage's plotting time.
    """
    n_rows, n_cols = len(rows), max(r.shape[0] for r in rows)
    width = 1.2 * n_cols + 1.2
    # A long title on a narrow grid is cut at both edges: wrap it to ~11 characters per inch at 10 pt.
    lines = textwrap.wrap(title, max(int(width * 11), 20)) if title else []
    fig, axes = plt.subplots(n_rows, 1, figsize=(width, 1.2 * n_rows + 0.2 + 0.25 * len(lines)), squeeze=False)
    pad = 2
    for i, row in enumerate(rows):
        row = row.detach().float().cpu()
        if len(row) < n_cols:
            row = torch.cat([row, row.new_ones((n_cols - len(row), *row.shape[1:]))])
        ax = axes[i][0]
        ax.imshow(grid_array(row, nrow=n_cols, padding=pad), interpolation="nearest")
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_yticks([])
        ax.set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=8)
        ax.set_xticks([])
        if i == 0 and col_labels is not None:
            cell = row.shape[-1] + pad
            ax.xaxis.tick_top()
            labels = list(col_labels[:n_cols])
            ax.set_xticks([pad + cell * j + (cell - pad) / 2 for j in range(len(labels))], labels, fontsize=8)
            ax.tick_params(axis="x", length=0)
    if lines:
        fig.suptitle("\n".join(lines), fontsize=10)
    return save_figure(fig, path)
