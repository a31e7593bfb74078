"""Line plots from per-epoch CSV logs (the same files DVC renders with `dvc plots show`)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from facegen.reporting.grids import plt, save_figure


def plot_training_curves(csv_path: Path, path: Path, title: str) -> Path:
    """One panel per loss name, train and val on the same axes."""
    log = pd.read_csv(csv_path)
    names = sorted({c.split("/", 1)[1] for c in log.columns if "/" in c})
    cols = min(3, len(names)) or 1
    rows = -(-len(names) // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for split in ("train", "val"):
            col = f"{split}/{name}"
            if col in log:
                ax.plot(log["epoch"], log[col], marker="o", label=split)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    return save_figure(fig, path)
