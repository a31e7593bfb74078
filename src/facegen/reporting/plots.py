"""Line plots from per-epoch CSV logs (the same files DVC renders with `dvc plots show`)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

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


def plot_code_usage(counts: torch.Tensor, path: Path, title: str) -> Path:
    """Code frequencies sorted from most to least used (log scale): collapse shows as a cliff."""
    freq = (counts / counts.sum()).sort(descending=True).values
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(freq)), freq.where(freq > 0, float("nan")).numpy(), width=1.0)
    ax.set_yscale("log")
    ax.set_xlabel("code rank")
    ax.set_ylabel("frequency")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_diversity(dists: dict[str, tuple[torch.Tensor, torch.Tensor]], path: Path, family: str) -> Path:
    """Histograms of pairwise distances, real pairs vs sample pairs, one panel per feature space."""
    fig, axes = plt.subplots(1, len(dists), figsize=(5 * len(dists), 3.6), squeeze=False)
    for ax, (name, (r, f)) in zip(axes[0], dists.items()):
        bins = torch.linspace(0, float(torch.cat([r, f]).max()), 60).numpy()
        ax.hist(r.numpy(), bins=bins, alpha=0.55, density=True, label="real test pairs")
        ax.hist(f.numpy(), bins=bins, alpha=0.55, density=True, label="sample pairs")
        ax.set_title(f"{name}: samples/real mean distance = {float(f.mean() / r.mean()):.2f}", fontsize=9)
        ax.set_xlabel("pairwise Euclidean distance")
        ax.legend(fontsize=8)
    fig.suptitle(f"{family} sample diversity: sample pairs closer than real pairs (histogram shifted left) "
                 "flag mode collapse or washed-out samples", fontsize=9)
    return save_figure(fig, path, dpi=90)


def plot_iwae_curve(ks: list[int], bits: list[float], baselines: dict[str, float], path: Path, title: str,
                    tolerance: float) -> Path:
    """The IWAE bound (bits/dim) against k on a log2 axis, in two panels: beside the ``baselines``
    (name -> bits/dim, e.g. uniform 8.0 and lossless codecs) on one scale, where the whole curve
    moves by less than a line's width; and alone, zoomed, with the band ``tolerance`` above the
    largest k's bound that defines where the curve is flat."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax in axes:
        ax.plot(ks, bits, marker="o", label="IWAE bound")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (importance samples)")
        ax.set_ylabel("bits/dim (lower is better)")
    for (name, value), style in zip(baselines.items(), ("--", ":", "-.", "--")):
        axes[0].axhline(value, linestyle=style, color="grey", linewidth=1)
        axes[0].annotate(f"{name} {value:.2f}", (ks[0], value), textcoords="offset points", xytext=(2, 2), fontsize=7)
    axes[0].set_title("against the baselines", fontsize=9)
    axes[1].axhspan(bits[-1], bits[-1] + tolerance, color="tab:green", alpha=0.2, label=f"within {tolerance:g} of k = {ks[-1]}")
    axes[1].set_title("zoomed", fontsize=9)
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=90)
